//! Child processes and loopback HTTP for the tests that run programs beside themselves (the
//! demo, chromedriver, Prometheus): a guard that kills and reaps its child on drop, a free port,
//! and an HTTP agent that never goes through a proxy.

use std::fs::{self, File};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed and reaped when dropped, so a failing assertion leaves nothing
/// running. Its output goes to a log file quoted in failure messages.
pub struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Running {
    pub fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Running {
        let file = File::create(&log).unwrap_or_else(|e| panic!("cannot create {log:?}: {e}"));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the handle of {log:?}: {e}"));
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Running { name, child, log }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last 4 KB of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let bytes = fs::read(&self.log).unwrap_or_default();
        let start = bytes.len().saturating_sub(4000);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); its output ends with:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        // Loopback only: a proxy from the environment must not see these requests.
        .proxy(None)
        .build()
        .into()
}
