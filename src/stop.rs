//! What wakes a connection's thread besides its socket: the account being
//! stopped, and the system clock being set or the machine resuming from
//! suspend (a timer that the kernel cancels when `CLOCK_REALTIME` jumps,
//! which it does on resume too). Neither costs a wake-up while nothing
//! happens.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Stops every thread of one account: an eventfd that, once written, stays
/// readable for every `poll` on it.
#[derive(Debug)]
pub struct Stop {
    fd: OwnedFd,
    stopped: AtomicBool,
}

impl Stop {
    pub fn new() -> io::Result<Arc<Stop>> {
        // SAFETY: eventfd has no pointer arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Arc::new(Stop {
            // SAFETY: fd is a new descriptor owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            stopped: AtomicBool::new(false),
        }))
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        // SAFETY: the descriptor is open for as long as self.
        unsafe { libc::eventfd_write(self.fd.as_raw_fd(), 1) };
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// Why a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Woken {
    /// The socket has data.
    Readable,
    /// The wait's time ran out.
    TimedOut,
    /// The account is being stopped.
    Stopped,
    /// The clock was set, or the machine resumed after `suspended`.
    ClockJumped { suspended: Duration },
}

/// One thread's waits.
#[derive(Debug)]
pub struct Waker {
    stop: Arc<Stop>,
    clock: OwnedFd,
    /// CLOCK_BOOTTIME − CLOCK_MONOTONIC when the clock timer was armed: it
    /// grows by the time spent suspended.
    slept_before: Duration,
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: now is a valid timespec.
    unsafe { libc::clock_gettime(id, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Time spent suspended since boot.
fn slept() -> Duration {
    clock(libc::CLOCK_BOOTTIME).saturating_sub(clock(libc::CLOCK_MONOTONIC))
}

impl Waker {
    pub fn new(stop: Arc<Stop>) -> io::Result<Waker> {
        // SAFETY: no pointer arguments; the result is checked.
        let fd =
            unsafe { libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut waker = Waker {
            stop,
            // SAFETY: fd is a new descriptor owned by nobody else.
            clock: unsafe { OwnedFd::from_raw_fd(fd) },
            slept_before: Duration::ZERO,
        };
        waker.arm()?;
        Ok(waker)
    }

    /// Arms the clock timer far in the future, to be cancelled when the
    /// clock is set.
    fn arm(&mut self) -> io::Result<()> {
        let now = clock(libc::CLOCK_REALTIME);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (now.as_secs() + 10 * 365 * 86_400) as libc::time_t,
                tv_nsec: 0,
            },
        };
        let flags = libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET;
        // SAFETY: spec is valid; the old value is not asked for.
        if unsafe { libc::timerfd_settime(self.clock.as_raw_fd(), flags, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.slept_before = slept();
        Ok(())
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_stopped()
    }

    /// Waits for `socket` to be readable (or only for the others when
    /// `None`), at most `timeout`.
    pub fn wait(&mut self, socket: Option<RawFd>, timeout: Duration) -> io::Result<Woken> {
        self.wait_for(socket, libc::POLLIN, timeout)
    }

    /// Waits for `socket` to be writable: a connection being made, or a
    /// TLS handshake with something to send.
    pub fn wait_writable(&mut self, socket: RawFd, timeout: Duration) -> io::Result<Woken> {
        self.wait_for(Some(socket), libc::POLLOUT, timeout)
    }

    /// Waits for `events` on `socket` ([`Woken::Readable`] says they came).
    fn wait_for(
        &mut self,
        socket: Option<RawFd>,
        events: libc::c_short,
        timeout: Duration,
    ) -> io::Result<Woken> {
        if self.stop.is_stopped() {
            return Ok(Woken::Stopped);
        }
        let mut fds = [
            libc::pollfd {
                fd: self.stop.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.clock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: socket.unwrap_or(-1),
                events,
                revents: 0,
            },
        ];
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        loop {
            // SAFETY: fds is a valid array of 3 pollfd.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 3, millis) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if ready == 0 {
                return Ok(Woken::TimedOut);
            }
            break;
        }
        if fds[0].revents != 0 {
            return Ok(Woken::Stopped);
        }
        if fds[1].revents != 0 {
            // The read fails with ECANCELED; it clears the timer's
            // cancelled state, without which it cannot be armed again.
            let mut expirations = 0u64;
            // SAFETY: reads 8 bytes into a u64.
            unsafe { libc::read(self.clock.as_raw_fd(), (&mut expirations as *mut u64).cast(), 8) };
            let suspended = slept().saturating_sub(self.slept_before);
            self.arm()?;
            return Ok(Woken::ClockJumped { suspended });
        }
        Ok(Woken::Readable)
    }

    /// Sleeps `duration` unless stopped first; true when stopped.
    pub fn sleep(&mut self, duration: Duration) -> bool {
        matches!(self.wait(None, duration), Ok(Woken::Stopped) | Err(_))
    }
}
