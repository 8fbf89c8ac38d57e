//! The Emacs module against a stand-in server that sends what no real
//! server does (tests/common/fake_imap.rs), in a real Emacs (Debian's 28.2
//! and 30.1 from scripts/fetch-emacs30.sh): `mailsync-imap-servers' watching
//! it as Gnus would reach it. Emacs stays alive, its memory grows within a
//! bound, the log says what the server did, and `mailsync-stop' returns at
//! once, even while the server is streaming.

mod common;

use std::sync::Arc;

use common::fake_imap::{self, FakeImap, Script};
use common::hostile_emacs;

/// The most the module may add to Emacs's peak memory under any of these servers.
const GROWTH_LIMIT_MIB: f64 = 150.0;

/// Runs [`hostile_emacs::run`] in each Emacs against `script`'s server.
fn in_emacs(capabilities: &'static str, script: Arc<Script>, expected: &str) {
    let server = FakeImap::start_offering(capabilities, script);
    in_emacs_on(server.port, "plain", Some(expected));
}

/// Runs it in each Emacs against the server on `port` and asserts: Emacs
/// alive, the log said `expected`, growth bounded, a prompt stop.
fn in_emacs_on(port: u16, stream: &str, expected: Option<&str>) {
    for emacs in hostile_emacs::emacsen() {
        let outcome = hostile_emacs::run(&emacs, port, stream, expected);
        let name = emacs.display();
        assert!(outcome.found, "{name}: {expected:?} never logged");
        assert!(
            outcome.growth_mib < GROWTH_LIMIT_MIB,
            "{name}: Emacs grew {} MiB",
            outcome.growth_mib
        );
        assert!(
            outcome.stop_ms < 1000.0,
            "{name}: mailsync-stop took {} ms",
            outcome.stop_ms
        );
    }
}

#[test]
fn a_list_without_end_leaves_emacs_alive_and_stoppable() {
    let script = fake_imap::streaming_on_list(fake_imap::endless_list);
    in_emacs(fake_imap::CAPABILITIES, script, "went past 250000 responses");
}

#[test]
fn an_endless_line_and_a_terabyte_literal_leave_emacs_alive_and_stoppable() {
    let line = fake_imap::streaming_on_list(fake_imap::endless_line);
    in_emacs(fake_imap::CAPABILITIES, line, "a line longer than 1 MiB");
    let literal = fake_imap::streaming_on_list(fake_imap::terabyte_literal);
    in_emacs(fake_imap::CAPABILITIES, literal, "announced a literal");
}

#[test]
fn a_flood_of_statuses_never_listed_reaches_no_hook() {
    in_emacs(
        fake_imap::WITH_NOTIFY,
        fake_imap::status_flood(None),
        "which it did not list",
    );
}

#[test]
fn a_black_holed_server_and_a_trickled_tls_handshake_do_not_hold_mailsync_stop() {
    let (hole, _fillers) = fake_imap::black_hole();
    in_emacs_on(hole.local_addr().unwrap().port(), "plain", None);
    in_emacs_on(fake_imap::trickling_tls(), "ssl", None);
}
