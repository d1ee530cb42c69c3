//! The sendmail command removes its half-written maildrop file when it is interrupted, so an
//! aborted submission leaves nothing behind for pickup to trip over.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use signal_hook::SigId;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::low_level::{register, unregister};

use crate::sysexits::EX_TEMPFAIL;

pub struct RemoveOnSignal {
    ids: Vec<SigId>,
}

impl RemoveOnSignal {
    pub fn new(path: &Path) -> RemoveOnSignal {
        let mut ids = Vec::new();
        if let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) {
            let c_path = std::sync::Arc::new(c_path);
            for sig in [SIGINT, SIGTERM, SIGHUP] {
                let c_path = c_path.clone();
                // SAFETY: the handler calls only unlink(2) and _exit(2), both async-signal-safe,
                // on a string allocated before the handler was installed.
                let id = unsafe {
                    register(sig, move || {
                        libc::unlink(c_path.as_ptr());
                        libc::_exit(EX_TEMPFAIL);
                    })
                };
                if let Ok(id) = id {
                    ids.push(id);
                }
            }
        }
        RemoveOnSignal { ids }
    }
}

impl Drop for RemoveOnSignal {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            unregister(id);
        }
    }
}
