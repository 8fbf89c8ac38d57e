//! A stand-in IMAP server on 127.0.0.1, for faults no real server can be
//! made to show: an answer without end, an endless line, a literal of a
//! terabyte. It greets, takes any login, and answers every later command
//! with what its script writes. Real servers (Dovecot) are tested elsewhere.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How the script answers one command: `tag` and the command's text
/// (e.g. `LIST "" "*"`); it writes to `out` until done or the client goes.
pub type Script = dyn Fn(&str, &str, &mut TcpStream) -> std::io::Result<()> + Send + Sync;

/// What the stand-in offers unless told otherwise.
pub const CAPABILITIES: &str = "IMAP4rev1 AUTH=PLAIN SASL-IR";

pub struct FakeImap {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeImap {
    pub fn start(script: Arc<Script>) -> FakeImap {
        FakeImap::start_offering(CAPABILITIES, script)
    }

    /// A server that offers `capabilities` (e.g. with NOTIFY).
    pub fn start_offering(capabilities: &'static str, script: Arc<Script>) -> FakeImap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => {
                        let script = Arc::clone(&script);
                        let stopping = Arc::clone(&stopping);
                        thread::spawn(move || serve(socket, capabilities, &*script, &stopping));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeImap {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `mailsync idle`'s arguments for this server.
    pub fn idle_args(&self) -> Vec<String> {
        self.idle_args_with("echo pw")
    }

    /// `mailsync idle`'s arguments for this server, the password printed by `pass_cmd`.
    pub fn idle_args_with(&self, pass_cmd: &str) -> Vec<String> {
        idle_args(self.port, pass_cmd, "none")
    }
}

/// `mailsync idle`'s arguments for a server on 127.0.0.1:`port` reached with
/// `--tls tls`, user "u", the password printed by `pass_cmd`.
pub fn idle_args(port: u16, pass_cmd: &str, tls: &str) -> Vec<String> {
    let port = port.to_string();
    [
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        "u",
        "--pass-cmd",
        pass_cmd,
        "--tls",
        tls,
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

impl Drop for FakeImap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut socket: TcpStream, capabilities: &str, script: &Script, stop: &AtomicBool) {
    let _ = socket.set_nonblocking(false);
    let _ = socket.set_write_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    if write!(socket, "* OK [CAPABILITY {capabilities}] a stand-in server\r\n").is_err() {
        return;
    }
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end();
        let (tag, command) = line.split_once(' ').unwrap_or((line, ""));
        let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let answered = match verb.as_str() {
            "AUTHENTICATE" | "LOGIN" => write!(socket, "{tag} OK logged in\r\n"),
            "CAPABILITY" => write!(socket, "* CAPABILITY {capabilities}\r\n{tag} OK done\r\n"),
            "LOGOUT" => {
                let _ = write!(socket, "* BYE bye\r\n{tag} OK done\r\n");
                return;
            }
            _ => script(tag, command, &mut socket),
        };
        if answered.is_err() {
            return;
        }
    }
}

/// The verb of a command line (`LIST "" "*"` → `LIST`).
pub fn verb(command: &str) -> String {
    command.split(' ').next().unwrap_or("").to_ascii_uppercase()
}

/// A script that answers LIST with `stream` (written until the client
/// goes) and every other command with OK.
pub fn streaming_on_list(stream: fn(&mut TcpStream) -> std::io::Result<()>) -> Arc<Script> {
    Arc::new(move |tag: &str, command: &str, out: &mut TcpStream| {
        if verb(command) == "LIST" {
            stream(out)
        } else {
            write!(out, "{tag} OK done\r\n")
        }
    })
}

/// `* LIST` lines without end, and no tagged answer.
pub fn endless_list(out: &mut TcpStream) -> std::io::Result<()> {
    let mut n = 0u64;
    loop {
        n += 1;
        write!(out, "* LIST () \".\" \"inf{n}\"\r\n")?;
    }
}

/// A line that never ends.
pub fn endless_line(out: &mut TcpStream) -> std::io::Result<()> {
    out.write_all(b"* LIST () \".\" \"")?;
    endless_bytes(out)
}

/// A literal announced at 999,999,999,999 bytes, then bytes without end.
pub fn terabyte_literal(out: &mut TcpStream) -> std::io::Result<()> {
    out.write_all(b"* LIST () \".\" {999999999999}\r\n")?;
    endless_bytes(out)
}

fn endless_bytes(out: &mut TcpStream) -> std::io::Result<()> {
    let chunk = [b'x'; 64 * 1024];
    loop {
        out.write_all(&chunk)?;
    }
}

/// What a server with NOTIFY offers.
pub const WITH_NOTIFY: &str = "IMAP4rev1 AUTH=PLAIN SASL-IR NOTIFY";

/// A NOTIFY server with one mailbox, INBOX, that answers IDLE with
/// `statuses` STATUS lines (None: without end) for mailboxes it never listed.
pub fn status_flood(statuses: Option<u64>) -> Arc<Script> {
    Arc::new(
        move |tag: &str, command: &str, out: &mut TcpStream| match verb(command).as_str() {
            "LIST" => write!(out, "* LIST () \".\" \"INBOX\"\r\n{tag} OK done\r\n"),
            "STATUS" => write!(
                out,
                "* STATUS \"INBOX\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7 UNSEEN 1)\r\n{tag} OK done\r\n"
            ),
            "IDLE" => {
                out.write_all(b"+ idling\r\n")?;
                let mut n = 0u64;
                while statuses.is_none_or(|limit| n < limit) {
                    write!(out, "* STATUS \"never{n}\" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n")?;
                    n += 1;
                }
                Ok(())
            }
            _ => write!(out, "{tag} OK done\r\n"),
        },
    )
}

/// A listener that takes no connection: its queue (one) is filled here, so
/// the kernel drops the next SYNs, as a firewall that drops IMAP does. The
/// streams returned hold the queue full.
pub fn black_hole() -> (TcpListener, Vec<TcpStream>) {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen on a listening socket only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let address = listener.local_addr().unwrap();
    let fillers = (0..3)
        .filter_map(|_| TcpStream::connect_timeout(&address, Duration::from_millis(300)).ok())
        .collect();
    (listener, fillers)
}

/// A port whose every connection gets a TLS record header announcing
/// 16 KiB, then a byte every 200 ms: a TLS handshake that never ends.
pub fn trickling_tls() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            thread::spawn(move || {
                if socket.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]).is_ok() {
                    while socket.write_all(&[0]).is_ok() {
                        thread::sleep(Duration::from_millis(200));
                    }
                }
            });
        }
    });
    port
}
