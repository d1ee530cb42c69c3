//! The smarthost SMTP client against real servers on loopback: aiosmtpd (tests/smtp/sink.py,
//! a recording smarthost that is not ours), plus bare sockets for the connection failures.
//! Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sink::{Sink, free_port};
use tidemail::deliver::smtp::{ClientSettings, Outcome, Outgoing, RcptResult, Session, SessionError, Stage};

async fn connect(sink: &Sink) -> Session {
    Session::connect("sink.test", &[sink.addr()], &settings()).await.unwrap()
}

/// Short waits: every test finishes in seconds even when something hangs.
fn settings() -> ClientSettings {
    ClientSettings::new("client.test").with_all_timeouts(Duration::from_secs(10))
}

fn message<'a>(sender: &str, recipients: &[&str], content: &'a [u8]) -> Outgoing<&'a [u8]> {
    Outgoing {
        sender: sender.to_string(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        size: content.len() as u64,
        body_8bit: !content.is_ascii(),
        content,
    }
}

fn summary(results: &[RcptResult]) -> Vec<(usize, u16, &str, Outcome)> {
    results.iter().map(|r| (r.index, r.code, r.status.as_str(), r.outcome())).collect()
}

const TEXT: &[u8] = b"Subject: test\nFrom: alice@client.test\n\nHello.\n";

#[tokio::test]
async fn mixed_recipient_results_in_one_pipelined_transaction() {
    let Some(sink) = Sink::start(&[
        "--reply",
        "later@sink.test=450 4.2.1 <later@sink.test>: mailbox busy",
        "--reply",
        "nobody@sink.test=550 5.1.1 <nobody@sink.test>: Recipient address rejected",
        "--reply",
        "plain@sink.test=554 no thanks",
    ]) else {
        return;
    };
    let mut session = connect(&sink).await;
    assert!(session.capabilities().esmtp && session.capabilities().pipelining);
    let recipients = ["one@sink.test", "later@sink.test", "nobody@sink.test", "plain@sink.test", "two@sink.test"];
    let results = session.send(message("alice@client.test", &recipients, TEXT)).await.unwrap();
    assert_eq!(
        summary(&results),
        [
            (0, 250, "2.0.0", Outcome::Delivered),
            (1, 450, "4.2.1", Outcome::Deferred),
            (2, 550, "5.1.1", Outcome::Bounced),
            (3, 554, "5.0.0", Outcome::Bounced),
            (4, 250, "2.0.0", Outcome::Delivered),
        ]
    );
    assert_eq!(results[0].text, "250 2.0.0 Ok: queued as M1");
    assert_eq!(results[0].stage, Stage::EndOfData);
    assert_eq!(
        results[2].diagnostic(session.relay()),
        "host sink.test[127.0.0.1] said: 550 5.1.1 <nobody@sink.test>: Recipient address rejected \
         (in reply to RCPT TO command)"
    );
    assert_eq!(session.relay().to_string(), format!("sink.test[127.0.0.1]:{}", sink.port));
    session.quit().await;

    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let (record, _) = &messages[0];
    assert_eq!(record["mail_from"], "alice@client.test");
    assert_eq!(record["rcpt_tos"], serde_json::json!(["one@sink.test", "two@sink.test"]));
    assert_eq!(record["helo"], "client.test");
    assert_eq!(record["esmtp"], true);
    assert_eq!(record["pipelined"], true, "MAIL, RCPT and DATA should go in one write");
    assert_eq!(record["via"], "DATA", "no CHUNKING offered: DATA");
}

#[tokio::test]
async fn several_messages_over_one_connection() {
    let Some(sink) = Sink::start(&["--reply", "nobody@sink.test=550 5.1.1 no such user"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let first = session.send(message("a@client.test", &["x@sink.test"], b"first\n")).await.unwrap();
    assert_eq!(first[0].outcome(), Outcome::Delivered);
    // Every recipient refused: the transaction is left open at the server and needs RSET.
    let refused = session.send(message("a@client.test", &["nobody@sink.test"], b"never\n")).await.unwrap();
    assert_eq!(summary(&refused), [(0, 550, "5.1.1", Outcome::Bounced)]);
    let third = session.send(message("", &["y@sink.test"], b"third\n")).await.unwrap();
    assert_eq!(third[0].outcome(), Outcome::Delivered);
    assert!(session.is_usable());
    session.quit().await;

    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].1, b"first\r\n");
    assert_eq!(messages[1].1, b"third\r\n");
    assert_eq!(messages[1].0["mail_from"], "<>");
    assert_eq!(messages[0].0["peer"], messages[1].0["peer"], "both messages over the same connection");
}

#[tokio::test]
async fn helo_when_ehlo_is_refused() {
    let Some(sink) = Sink::start(&["--no-ehlo", "--no-pipelining"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    assert!(!session.capabilities().esmtp);
    assert!(!session.capabilities().pipelining);
    let results = session.send(message("a@client.test", &["x@sink.test", "y@sink.test"], TEXT)).await.unwrap();
    assert!(results.iter().all(|r| r.outcome() == Outcome::Delivered), "{results:?}");
    session.quit().await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0["esmtp"], false);
    assert_eq!(messages[0].0["helo"], "client.test");
    // Plain SMTP: no MAIL FROM parameters.
    assert_eq!(messages[0].0["mail_options"], serde_json::json!([]));
}

#[tokio::test]
async fn one_command_at_a_time_without_pipelining() {
    let Some(sink) = Sink::start(&["--no-pipelining", "--reply", "nobody@sink.test=550 5.1.1 no"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    assert!(session.capabilities().esmtp && !session.capabilities().pipelining);
    let results = session.send(message("a@client.test", &["nobody@sink.test", "x@sink.test"], TEXT)).await.unwrap();
    assert_eq!(summary(&results), [(0, 550, "5.1.1", Outcome::Bounced), (1, 250, "2.0.0", Outcome::Delivered)]);
    session.quit().await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0["pipelined"], false);
}

#[tokio::test]
async fn size_refused_before_any_data_is_sent() {
    let Some(sink) = Sink::start(&["--size", "1000"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    assert_eq!(session.capabilities().size, Some(1000));
    let big = vec![b'x'; 5000];
    let results = session.send(message("a@client.test", &["x@sink.test", "y@sink.test"], &big)).await.unwrap();
    assert_eq!(summary(&results), [(0, 552, "5.3.4", Outcome::Bounced), (1, 552, "5.3.4", Outcome::Bounced)]);
    assert_eq!(results[0].stage, Stage::Local);
    assert_eq!(
        results[0].diagnostic(session.relay()),
        "message size 5000 exceeds size limit 1000 of server sink.test[127.0.0.1]"
    );
    // The session is still good for a message that fits.
    let results = session.send(message("a@client.test", &["x@sink.test"], TEXT)).await.unwrap();
    assert_eq!(results[0].outcome(), Outcome::Delivered);
    session.quit().await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "the big message must not have reached the sink");
    assert_eq!(messages[0].1, b"Subject: test\r\nFrom: alice@client.test\r\n\r\nHello.\r\n");
    assert!(messages[0].0["mail_options"].as_array().unwrap().contains(&format!("SIZE={}", TEXT.len()).into()));
}

#[tokio::test]
async fn content_arrives_byte_exact_with_dots_and_8bit() {
    let Some(sink) = Sink::start(&[]) else {
        return;
    };
    let content = "Subject: dots\n\n.\n..\n.leading dot\nmiddle . dot\n. \nCaf\u{e9} \u{2603}\n\nend without newline";
    let mut long = String::from(content);
    // Longer than one read of the content, so lines cross buffer boundaries.
    for i in 0..20_000 {
        long.push_str(&format!("\n.{i} line"));
    }
    long.push('\n');
    let mut session = connect(&sink).await;
    let results = session.send(message("a@client.test", &["x@sink.test"], long.as_bytes())).await.unwrap();
    assert_eq!(results[0].outcome(), Outcome::Delivered, "{results:?}");
    session.quit().await;

    let expected = long.replace('\n', "\r\n");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].1 == expected.as_bytes(), "content differs at the sink");
    let options = messages[0].0["mail_options"].as_array().unwrap().clone();
    assert!(options.contains(&"BODY=8BITMIME".into()), "{options:?}");
}

#[tokio::test]
async fn connection_cut_during_data_defers_the_whole_message() {
    let Some(sink) = Sink::start(&["--cut-after", "300"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let body: Vec<u8> = (0..2000).flat_map(|i| format!("line {i} of a message cut short\n").into_bytes()).collect();
    let error = session.send(message("a@client.test", &["x@sink.test", "y@sink.test"], &body)).await.unwrap_err();
    assert!(error.is_temporary(), "{error}");
    assert_eq!(error.status(), "4.4.2");
    assert!(
        matches!(error, SessionError::Lost { stage: Stage::Content | Stage::EndOfData, .. }),
        "unexpected error: {error:?}"
    );
    assert!(error.to_string().starts_with("lost connection with sink.test[127.0.0.1] while sending"), "{error}");
    assert!(!session.is_usable());
    let again = session.send(message("a@client.test", &["x@sink.test"], TEXT)).await.unwrap_err();
    assert!(matches!(again, SessionError::Closed { .. }) && again.is_temporary());
    assert!(sink.messages().is_empty(), "nothing may be recorded as sent");
}

/// Content that fails after a few bytes, as a damaged queue file would.
struct FailingContent(usize);

impl tokio::io::AsyncRead for FailingContent {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("queue file damaged")));
        }
        let n = self.0.min(buf.remaining()).min(10);
        buf.put_slice(&b"line of x\n"[..n]);
        self.0 -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn unreadable_content_abandons_the_session_without_the_final_dot() {
    let Some(sink) = Sink::start(&[]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let outgoing = Outgoing {
        sender: "a@client.test".to_string(),
        recipients: vec!["x@sink.test".to_string()],
        size: 1000,
        body_8bit: false,
        content: FailingContent(100),
    };
    let error = session.send(outgoing).await.unwrap_err();
    assert!(matches!(error, SessionError::Content { .. }), "{error:?}");
    assert!(error.is_temporary());
    assert!(!session.is_usable());
    session.quit().await;
    // The sink saw the connection end mid-DATA: nothing accepted. Give it a moment to record
    // anything it (wrongly) would.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn connect_to_a_closed_port_fails_fast_and_temporarily() {
    let port = free_port(); // bound then released: nothing listens there
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    let error = Session::connect("closed.test", &[addr], &settings()).await.err().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(error, SessionError::Connect { .. }), "{error:?}");
    assert!(error.is_temporary());
    assert_eq!(error.status(), "4.4.1");
    assert!(error.to_string().starts_with(&format!("connect to closed.test[127.0.0.1]:{port}: ")), "{error}");
}

#[tokio::test]
async fn connect_timeout_to_a_port_that_never_answers() {
    // A listener that never accepts, its backlog filled: further SYNs are dropped, as by a
    // filtering firewall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    let mut filled = false;
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => {
                filled = true;
                break;
            }
        }
    }
    if !filled {
        eprintln!("skipped: this kernel never drops SYNs to a full backlog");
        return;
    }
    let mut settings = settings();
    settings.connect_timeout = Duration::from_secs(1);
    let start = Instant::now();
    let error = Session::connect("filtered.test", &[addr], &settings).await.err().unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert!(matches!(error, SessionError::ConnectTimeout { .. }), "{error:?}");
    assert!(error.is_temporary());
    assert_eq!(error.to_string(), format!("connect to filtered.test[127.0.0.1]:{}: Connection timed out", addr.port()));
    drop(held);
}

#[tokio::test]
async fn silent_server_times_out_at_the_greeting_and_next_address_is_tried() {
    // First address: accepts, never greets. Second: the real sink.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    let keeper = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let mut settings = settings();
    settings.helo_timeout = Duration::from_secs(1);
    let start = Instant::now();
    let error = Session::connect("silent.test", &[silent], &settings).await.err().unwrap();
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(matches!(error, SessionError::Timeout { stage: Stage::Greeting, .. }), "{error:?}");
    assert!(error.is_temporary());
    assert_eq!(
        error.to_string(),
        "conversation with silent.test[127.0.0.1] timed out while receiving the initial server greeting"
    );

    if let Some(sink) = Sink::start(&[]) {
        let mut session = Session::connect("relay.test", &[silent, sink.addr()], &settings).await.unwrap();
        assert_eq!(session.relay().addr, sink.addr());
        let results = session.send(message("a@client.test", &["x@sink.test"], TEXT)).await.unwrap();
        assert_eq!(results[0].outcome(), Outcome::Delivered);
        session.quit().await;
    }
    keeper.abort();
}

#[tokio::test]
async fn postfix_smtp_sink_accepts_a_message() {
    // Postfix's own test server, when installed: a second, independent peer.
    let smtp_sink = Path::new("/usr/sbin/smtp-sink");
    if !smtp_sink.exists() {
        eprintln!("skipped: /usr/sbin/smtp-sink (postfix) is not installed");
        return;
    }
    let port = free_port();
    let mut command = Command::new(smtp_sink);
    if common::is_root() {
        command.args(["-u", "nobody"]);
    }
    let mut child = command
        .args(["-c", &format!("127.0.0.1:{port}"), "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = loop {
        match Session::connect("smtp-sink.test", &[addr], &settings()).await {
            Ok(session) => break Ok(session),
            Err(error) if Instant::now() > deadline => break Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut session = session.unwrap();
    assert!(session.capabilities().pipelining);
    for round in 0..2 {
        let results = session.send(message("a@client.test", &["x@sink.test", "y@sink.test"], TEXT)).await.unwrap();
        assert!(results.iter().all(|r| r.outcome() == Outcome::Delivered), "round {round}: {results:?}");
    }
    session.quit().await;
    let _ = child.kill();
    let _ = child.wait();
}

// CHUNKING (RFC 3030): the sink's --chunking mode takes BDAT, which aiosmtpd itself does not.

/// Content whose lines start with dots, 8-bit text and no final newline; longer than one read.
fn dotted_content(lines: usize) -> String {
    let mut content = String::from(
        "Subject: dots\n\n.\n..\n.leading dot\nmiddle . dot\n. \nCaf\u{e9} \u{2603}\n\nend without newline",
    );
    for i in 0..lines {
        content.push_str(&format!("\n.{i} line"));
    }
    content
}

#[tokio::test]
async fn bdat_when_chunking_is_offered_content_byte_exact_and_unstuffed() {
    let Some(sink) = Sink::start(&["--chunking"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    assert!(session.capabilities().chunking && session.capabilities().pipelining);
    assert!(session.pipelines_messages());
    // One chunk, then more than BDAT_CHUNK (1 MiB): several chunks, the last with LAST.
    for lines in [20_000, 120_000] {
        let content = dotted_content(lines);
        let results = session.send(message("a@client.test", &["x@sink.test"], content.as_bytes())).await.unwrap();
        assert_eq!(summary(&results), [(0, 250, "2.0.0", Outcome::Delivered)]);
        assert_eq!(results[0].stage, Stage::EndOfData);
    }
    session.quit().await;

    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    for ((record, received), lines) in messages.iter().zip([20_000, 120_000]) {
        assert_eq!(record["via"], "BDAT");
        assert_eq!(record["pipelined"], true, "MAIL, RCPT and BDAT should go in one write");
        // CRLF line ends (one added at the end, as for DATA); dots exactly as written.
        let expected = format!("{}\r\n", dotted_content(lines).replace('\n', "\r\n"));
        assert!(received == expected.as_bytes(), "content differs at the sink ({lines} lines)");
        let options = record["mail_options"].as_array().unwrap();
        assert!(options.contains(&"BODY=8BITMIME".into()), "{options:?}");
    }
}

#[tokio::test]
async fn bdat_with_refused_recipients_and_with_every_recipient_refused() {
    let Some(sink) = Sink::start(&[
        "--chunking",
        "--reply",
        "later@sink.test=450 4.2.1 <later@sink.test>: mailbox busy",
        "--reply",
        "nobody@sink.test=550 5.1.1 <nobody@sink.test>: Recipient address rejected",
    ]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let mixed = ["one@sink.test", "later@sink.test", "nobody@sink.test", "two@sink.test"];
    let results = session.send(message("a@client.test", &mixed, TEXT)).await.unwrap();
    assert_eq!(
        summary(&results),
        [
            (0, 250, "2.0.0", Outcome::Delivered),
            (1, 450, "4.2.1", Outcome::Deferred),
            (2, 550, "5.1.1", Outcome::Bounced),
            (3, 250, "2.0.0", Outcome::Delivered),
        ]
    );
    assert_eq!(results[2].stage, Stage::Rcpt);
    // Every recipient refused: the server answers BDAT with 554; each keeps its RCPT reply.
    let refused = session.send(message("a@client.test", &["nobody@sink.test", "later@sink.test"], TEXT)).await.unwrap();
    assert_eq!(summary(&refused), [(0, 550, "5.1.1", Outcome::Bounced), (1, 450, "4.2.1", Outcome::Deferred)]);
    assert!(refused.iter().all(|r| r.stage == Stage::Rcpt), "{refused:?}");
    // The session goes on (RSET first).
    let after = session.send(message("", &["three@sink.test"], b"after\n")).await.unwrap();
    assert_eq!(summary(&after), [(0, 250, "2.0.0", Outcome::Delivered)]);
    session.quit().await;

    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "nothing may be delivered when every recipient was refused");
    assert_eq!(messages[0].0["rcpt_tos"], serde_json::json!(["one@sink.test", "two@sink.test"]));
    assert_eq!(messages[1].0["rcpt_tos"], serde_json::json!(["three@sink.test"]));
    assert_eq!(messages[1].1, b"after\r\n");
    assert!(messages.iter().all(|(record, _)| record["via"] == "BDAT"));
}

#[tokio::test]
async fn bdat_messages_written_before_earlier_replies_are_read() {
    let Some(sink) = Sink::start(&["--chunking", "--reply", "nobody@sink.test=550 5.1.1 no such user"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let batch: [(&str, &[&str], &[u8]); 4] = [
        ("a@client.test", &["x@sink.test"], b"first\n"),
        ("a@client.test", &["nobody@sink.test"], b"never\n"),
        ("a@client.test", &["y@sink.test", "nobody@sink.test"], b"third\n"),
        ("", &["z@sink.test"], b"fourth\n"),
    ];
    let mut tickets = Vec::new();
    for (sender, recipients, content) in batch {
        tickets.push(session.submit(message(sender, recipients, content)).await.unwrap());
    }
    assert_eq!(session.unanswered(), 4);
    let mut results = Vec::new();
    for ticket in tickets {
        results
            .push(summary(&session.collect(ticket).await.unwrap()).into_iter().map(|r| (r.0, r.1)).collect::<Vec<_>>());
    }
    assert_eq!(results, [vec![(0, 250)], vec![(0, 550)], vec![(0, 250), (1, 550)], vec![(0, 250)]]);
    assert_eq!(session.unanswered(), 0);
    assert!(session.is_usable());
    session.quit().await;

    let messages = sink.messages();
    let contents: Vec<&[u8]> = messages.iter().map(|(_, c)| c.as_slice()).collect();
    assert_eq!(contents, [&b"first\r\n"[..], b"third\r\n", b"fourth\r\n"]);
    assert_eq!(messages[2].0["mail_from"], "<>");
    assert!(messages.iter().all(|(record, _)| record["peer"] == messages[0].0["peer"]), "one connection");
}

#[tokio::test]
async fn connection_cut_after_the_bdat_chunk_may_have_delivered() {
    let Some(sink) = Sink::start(&["--chunking", "--drop-after-dot"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let error = session.send(message("a@client.test", &["x@sink.test"], TEXT)).await.unwrap_err();
    // The whole chunk went out: the server may have taken it (the queue manager flags a
    // possible duplicate for this stage).
    assert!(matches!(error, SessionError::Lost { stage: Stage::EndOfData, .. }), "{error:?}");
    assert!(error.to_string().contains("message may be sent more than once"), "{error}");
    assert_eq!((error.is_temporary(), error.status().as_str()), (true, "4.4.2"));
    assert!(!session.is_usable());
    let dropped = std::fs::read_to_string(sink.dir.path().join("dropped.log")).unwrap();
    assert_eq!(dropped.trim(), format!("{}", TEXT.len() + 4), "the sink read the whole chunk (CRLF added)");
}

#[tokio::test]
async fn connection_cut_with_messages_unanswered_fails_each_as_possibly_delivered() {
    let Some(sink) = Sink::start(&["--chunking", "--drop-after-dot"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let first = session.submit(message("a@client.test", &["x@sink.test"], TEXT)).await.unwrap();
    // The second may or may not be written before the cut is seen.
    let second = session.submit(message("a@client.test", &["y@sink.test"], TEXT)).await;
    let error = session.collect(first).await.unwrap_err();
    assert!(matches!(error, SessionError::Lost { stage: Stage::EndOfData, .. }), "{error:?}");
    if let Ok(second) = second {
        let error = session.collect(second).await.unwrap_err();
        assert!(matches!(error, SessionError::Lost { stage: Stage::EndOfData, .. }), "{error:?}");
    }
    assert!(!session.is_usable() && session.unanswered() == 0);
}

#[tokio::test]
async fn connection_cut_during_a_bdat_chunk_defers_the_message() {
    let Some(sink) = Sink::start(&["--chunking", "--cut-after", "300"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let body: Vec<u8> = (0..50_000).flat_map(|i| format!("line {i} of a message cut short\n").into_bytes()).collect();
    let error = session.send(message("a@client.test", &["x@sink.test"], &body)).await.unwrap_err();
    assert!(error.is_temporary(), "{error}");
    // Cut before the chunk was written whole: Content; after (it all fit in the socket
    // buffers), the client cannot tell and must assume it may have arrived.
    assert!(matches!(error, SessionError::Lost { stage: Stage::Content | Stage::EndOfData, .. }), "{error:?}");
    assert!(!session.is_usable());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sink.messages().is_empty(), "nothing may be recorded as sent");
}

#[tokio::test]
async fn unreadable_content_under_bdat_is_found_before_anything_is_written() {
    let Some(sink) = Sink::start(&["--chunking"]) else {
        return;
    };
    let mut session = connect(&sink).await;
    let outgoing = Outgoing {
        sender: "a@client.test".to_string(),
        recipients: vec!["x@sink.test".to_string()],
        size: 1000,
        body_8bit: false,
        content: FailingContent(100),
    };
    let error = session.send(outgoing).await.unwrap_err();
    assert!(matches!(error, SessionError::Content { .. }), "{error:?}");
    // Nothing of it went out (the content is read before the envelope is written).
    assert!(session.is_usable());
    let results = session.send(message("a@client.test", &["x@sink.test"], TEXT)).await.unwrap();
    assert_eq!(results[0].outcome(), Outcome::Delivered);
    session.quit().await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1, b"Subject: test\r\nFrom: alice@client.test\r\n\r\nHello.\r\n");
}

#[tokio::test]
async fn data_when_chunking_is_not_offered() {
    let Some(sink) = Sink::start(&[]) else {
        return;
    };
    let mut session = connect(&sink).await;
    assert!(!session.capabilities().chunking && !session.pipelines_messages());
    // submit() without CHUNKING does the whole transaction: the ticket holds the results.
    let ticket = session.submit(message("a@client.test", &["x@sink.test"], TEXT)).await.unwrap();
    assert_eq!(session.unanswered(), 0);
    let results = session.collect(ticket).await.unwrap();
    assert_eq!(results[0].outcome(), Outcome::Delivered);
    session.quit().await;
    assert_eq!(sink.records()[0]["via"], "DATA");
}

#[tokio::test]
async fn shared_kit_pysink_takes_bdat() {
    // The benchmark kit's sink (../shared/bench/pysink.py, standard library only), when
    // present: a second, independent server with CHUNKING.
    let pysink = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/pysink.py");
    if !pysink.exists() {
        eprintln!("skipped: {} is not there", pysink.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (log, ready) = (dir.path().join("log"), dir.path().join("ready"));
    let port = free_port();
    let mut child = Command::new("python3")
        .arg(&pysink)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--chunking"])
        .arg("--log")
        .arg(&log)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut session = Session::connect("pysink.test", &[addr], &settings()).await.unwrap();
    assert!(session.pipelines_messages());
    let contents: Vec<String> =
        (0..5).map(|i| format!("Message-ID: <m{i}@client.test>\n\n.{i}\n{}", "x".repeat(i * 100_000))).collect();
    let mut tickets = Vec::new();
    for content in &contents {
        tickets.push(session.submit(message("a@client.test", &["x@sink.test"], content.as_bytes())).await.unwrap());
    }
    for ticket in tickets {
        let results = session.collect(ticket).await.unwrap();
        assert_eq!(results[0].outcome(), Outcome::Delivered, "{results:?}");
    }
    session.quit().await;
    let _ = child.kill();
    let _ = child.wait();
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<(String, u64, String)> = lines
        .iter()
        .map(|l| {
            (l["mid"].as_str().unwrap().to_string(), l["size"].as_u64().unwrap(), l["via"].as_str().unwrap().into())
        })
        .collect();
    let expected: Vec<(String, u64, String)> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut wire = c.replace('\n', "\r\n");
            if !wire.ends_with("\r\n") {
                wire.push_str("\r\n");
            }
            (format!("<m{i}@client.test>"), wire.len() as u64, "BDAT".to_string())
        })
        .collect();
    assert_eq!(got, expected);
}
