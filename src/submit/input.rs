//! sendmail's standard input as a stream of LF-terminated lines.
//!
//! CRLF becomes LF (Postfix's sendmail_fix_line_endings = always), and unless -i/-oi was given
//! a line with a single "." ends the message, as sendmail has always done. Memory stays bounded
//! whatever the input: an over-long line is passed on in pieces.

use std::io::{self, BufRead, Read};

const PIECE: u64 = 64 * 1024;

pub struct MessageInput<R> {
    inner: R,
    ignore_dots: bool,
    line: Vec<u8>,
    pos: usize,
    /// The previous piece ended without a newline: the next piece continues that line.
    mid_line: bool,
    /// A "\r" held back at the end of a piece: it may be half of a CRLF.
    held_cr: bool,
    done: bool,
}

impl<R: BufRead> MessageInput<R> {
    pub fn new(inner: R, ignore_dots: bool) -> Self {
        MessageInput { inner, ignore_dots, line: Vec::new(), pos: 0, mid_line: false, held_cr: false, done: false }
    }

    fn next_piece(&mut self) -> io::Result<()> {
        self.line.clear();
        self.pos = 0;
        if self.held_cr {
            self.line.push(b'\r');
            self.held_cr = false;
        }
        let at_line_start = !self.mid_line;
        let n = (&mut self.inner).take(PIECE).read_until(b'\n', &mut self.line)?;
        if n == 0 {
            self.done = true;
            return Ok(());
        }
        if self.line.ends_with(b"\r\n") {
            let len = self.line.len();
            self.line.truncate(len - 2);
            self.line.push(b'\n');
        } else if self.line.ends_with(b"\r") && self.line.len() as u64 > PIECE / 2 {
            self.line.pop();
            self.held_cr = true;
        }
        self.mid_line = !self.line.ends_with(b"\n");
        if at_line_start && !self.ignore_dots && (self.line == b".\n" || self.line == b".") {
            self.line.clear();
            self.done = true;
        }
        Ok(())
    }
}

impl<R: BufRead> Read for MessageInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for MessageInput<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.line.len() && !self.done {
            self.next_piece()?;
        }
        Ok(&self.line[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.line.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], ignore_dots: bool) -> Vec<u8> {
        let mut out = Vec::new();
        MessageInput::new(input, ignore_dots).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn crlf_becomes_lf_and_bare_cr_stays() {
        assert_eq!(run(b"a\r\nb\rc\r\n", true), b"a\nb\rc\n");
    }

    #[test]
    fn single_dot_ends_input_unless_ignored() {
        assert_eq!(run(b"a\n.\nafter\n", false), b"a\n");
        assert_eq!(run(b"a\r\n.\r\nafter\n", false), b"a\n");
        assert_eq!(run(b"a\n.\nafter\n", true), b"a\n.\nafter\n");
        assert_eq!(run(b"a\n..\n.x\n", false), b"a\n..\n.x\n");
    }

    #[test]
    fn long_lines_pass_in_pieces_and_dots_inside_them_do_not_count() {
        let mut long = vec![b'x'; 200_000];
        long.extend_from_slice(b"\r\n.\n");
        let out = run(&long, false);
        assert_eq!(out.len(), 200_001);
        assert!(out.ends_with(b"x\n"));
    }

    #[test]
    fn crlf_split_across_pieces_is_joined() {
        let mut input = vec![b'y'; PIECE as usize - 1];
        input.extend_from_slice(b"\r\nz\n");
        let out = run(&input, true);
        assert_eq!(out.len(), PIECE as usize - 1 + 3);
        assert!(!out.contains(&b'\r'));
    }
}
