//! `zcsplice send` against a real SMTP server on localhost (aiosmtpd,
//! tests/fixtures/smtp_sink.py): a dry run opens no connection, a thread
//! cut off mid-send resumes with no message twice, bad settings and a
//! checkpatch warning send nothing, and what the server got is, through
//! b4 and git am, exactly what `zcsplice apply` commits.
//!
//! The toy tree is no kernel tree, so it gets a stand-in
//! scripts/checkpatch.pl with checkpatch's output contract and one rule
//! (an added line with XXX is a warning); the real checkpatch gates the
//! real series in debian_trees.rs.

mod common;
use common::*;
use std::path::{Path, PathBuf};

const CHECKPATCH: &str = r#"#!/usr/bin/perl
# Stand-in for the kernel's scripts/checkpatch.pl (zcsplice's tests):
# a report, then checkpatch's totals line; an added XXX is a warning.
my ($n, $w) = (0, 0);
open(my $fh, '<', $ARGV[-1]) or die "cannot open $ARGV[-1]";
while (<$fh>) {
	$n++;
	if (/^\+.*XXX/) { print "WARNING: XXX left in\n#$n: $_\n"; $w++; }
}
print "total: 0 errors, $w warnings, 0 checks, $n lines checked\n";
exit($w ? 1 : 0);
"#;

/// The toy tree with the stand-in checkpatch, sending to `port`.
fn tree(d: &Path, port: u16) -> PathBuf {
    let t = toy_tree(d, true);
    let cp = t.join("scripts/checkpatch.pl");
    std::fs::create_dir_all(cp.parent().unwrap()).unwrap();
    std::fs::write(&cp, CHECKPATCH).unwrap();
    git(&t, &["add", "scripts"]);
    git(&t, &["commit", "-q", "-m", "checkpatch"]);
    smtp_port(&t, port);
    git(&t, &["config", "sendemail.smtpServer", "127.0.0.1"]);
    t
}

fn smtp_port(t: &Path, port: u16) {
    git(
        t,
        &["config", "sendemail.smtpServerPort", &port.to_string()],
    );
}

fn send(t: &Path, d: &Path, series: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "send",
        "--tree",
        t.to_str().unwrap(),
        "--no-maintainers",
        "--to",
        "Some Maintainer <maint@example.org>",
        "--cc",
        "toy-list@example.org",
    ];
    args.extend_from_slice(extra);
    zcsplice_send(&args, series, &d.join("cache"), &d.join("home"))
}

/// The Message-Id of each message, in order.
fn ids(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap_or_else(|| panic!("no Message-ID in\n{m}"))
                .to_string()
        })
        .collect()
}

#[test]
#[ignore = "needs aiosmtpd from PyPI (tests/run.sh installs it)"]
fn a_dry_run_opens_no_connection_and_prints_the_envelope() {
    let d = tempfile::tempdir().unwrap();
    let sink = Sink::start(&d.path().join("sink"), None);
    let t = tree(d.path(), sink.port);
    let out = ok(&send(&t, d.path(), &fixture_series(), &[]));
    assert!(out.starts_with("from: test@example.org\n"), "{out}");
    assert!(
        out.contains("  subject: [PATCH 0/2] toy: a fixture series\n"),
        "{out}"
    );
    assert!(
        out.contains("  to: Some Maintainer <maint@example.org>\n"),
        "{out}"
    );
    assert!(out.contains("  cc: toy-list@example.org\n"), "{out}");
    assert_eq!(
        out.matches("\n<20261126-fixture-0123456789ab-v1-").count(),
        3,
        "{out}"
    );
    let mbox = out.lines().last().unwrap();
    assert!(mbox.ends_with("dry-run.mbox"), "{out}");
    assert_eq!(
        std::fs::read_to_string(mbox)
            .unwrap()
            .matches("\nMessage-ID: ")
            .count(),
        3
    );
    assert_eq!((sink.sessions(), sink.messages().len()), (0, 0));
    assert!(git(&t, &["tag", "-l", "sent/*"]).is_empty());
}

#[test]
#[ignore = "needs aiosmtpd from PyPI (tests/run.sh installs it)"]
fn a_send_cut_off_resumes_with_no_message_twice() {
    let d = tempfile::tempdir().unwrap();
    let first = Sink::start(&d.path().join("first"), Some(1));
    let t = tree(d.path(), first.port);
    let o = send(&t, d.path(), &fixture_series(), &["--confirm"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(128), "{err}");
    assert!(
        err.contains("1 of the 3 messages were: `zcsplice send --resume` sends the rest"),
        "{err}"
    );
    assert_eq!(first.messages().len(), 1);
    // Who gets each message is said as it goes.
    assert!(
        err.contains("sending 0: <") && err.contains("  to: Some Maintainer <maint@example.org>\n"),
        "{err}"
    );

    // Sent once, never started over.
    let o = send(&t, d.path(), &fixture_series(), &["--confirm"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 of this revision's 3 messages were sent already"),
        "{err}"
    );

    let second = Sink::start(&d.path().join("second"), None);
    smtp_port(&t, second.port);
    let out = ok(&send(
        &t,
        d.path(),
        &fixture_series(),
        &["--confirm", "--resume"],
    ));
    assert!(
        out.contains("sent 2 of 3 messages through 127.0.0.1:"),
        "{out}"
    );
    assert!(
        out.contains("tagged sent/20261126-fixture-0123456789ab-v1"),
        "{out}"
    );

    let mut all = first.messages();
    all.extend(second.messages());
    let got = ids(&all);
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((got.len(), unique.len()), (3, 3), "{got:?}");
    // In thread order, each patch replying to the cover letter.
    assert!(all[0].contains("Subject: [PATCH 0/2]"), "{}", all[0]);
    for m in &all[1..] {
        assert!(m.contains(&format!("In-Reply-To: {}", got[0])), "{m}");
    }
    // The envelope went to every recipient of the headers.
    let rcpt = std::fs::read_to_string(second.out.join("001.rcpt")).unwrap();
    assert_eq!(
        rcpt,
        "test@example.org\nmaint@example.org\ntoy-list@example.org\n"
    );

    // The revision is sent: the tag names its last patch; no second send.
    let tip = git(
        &t,
        &[
            "rev-parse",
            "sent/20261126-fixture-0123456789ab-v1^{commit}",
        ],
    );
    assert_eq!(
        git(&t, &["log", "-1", "--format=%s", &tip]),
        "mm: use toy_helper() in generic_perform_write (folio API)"
    );
    let o = send(&t, d.path(), &fixture_series(), &["--confirm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("revision 1 was sent already"));
}

#[test]
#[ignore = "needs aiosmtpd from PyPI (tests/run.sh installs it)"]
fn bad_smtp_settings_send_nothing() {
    let d = tempfile::tempdir().unwrap();
    let sink = Sink::start(&d.path().join("sink"), None);
    let t = tree(d.path(), sink.port);
    let fails = |what: &str| {
        let o = send(&t, d.path(), &fixture_series(), &["--confirm"]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_ne!(o.status.code(), Some(0), "{what}: {err}");
        err
    };
    git(&t, &["config", "sendemail.smtpEncryption", "starttls"]);
    assert!(fails("encryption").contains("sendemail.smtpEncryption is `starttls`"));
    git(&t, &["config", "--unset", "sendemail.smtpEncryption"]);
    git(&t, &["config", "sendemail.smtpServerPort", "smtp"]);
    assert!(fails("port").contains("sendemail.smtpServerPort is `smtp`"));
    git(&t, &["config", "--unset", "sendemail.smtpServerPort"]);
    git(&t, &["config", "--unset", "sendemail.smtpServer"]);
    assert!(fails("server").contains("no SMTP server"));
    git(&t, &["config", "sendemail.smtpServer", "127.0.0.1"]);
    git(&t, &["config", "sendemail.smtpUser", "me"]);
    smtp_port(&t, sink.port);
    let err = fails("user without password");
    assert!(
        err.contains("sendemail.smtpUser is me but there is no password"),
        "{err}"
    );
    assert_eq!((sink.sessions(), sink.messages().len()), (0, 0));
}

#[test]
#[ignore = "needs aiosmtpd from PyPI (tests/run.sh installs it)"]
fn a_checkpatch_warning_stops_the_send() {
    let d = tempfile::tempdir().unwrap();
    let sink = Sink::start(&d.path().join("sink"), None);
    let t = tree(d.path(), sink.port);
    let series = d.path().join("series");
    copy_dir(&fixture_series(), &series);
    let helper = series.join("templates/helper.c.j2");
    let text = std::fs::read_to_string(&helper).unwrap();
    std::fs::write(&helper, text.replace("return 1;", "return 1; /* XXX */")).unwrap();
    let o = send(&t, d.path(), &series, &["--confirm"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("checkpatch.pl --strict is not clean on 1 patch(es)"),
        "{err}"
    );
    assert!(err.contains("WARNING: XXX left in"), "{err}");
    assert_eq!((sink.sessions(), sink.messages().len()), (0, 0));
}

/// What the server got, through b4 am and git am, is what apply commits
/// (without the testing patches), and b4 reads the revision and base.
/// Sent by someone else, the patches still credit their author.
#[test]
#[ignore = "needs aiosmtpd and b4 from PyPI (tests/run.sh installs them)"]
fn b4_am_of_the_sent_thread_gives_what_apply_commits() {
    let d = tempfile::tempdir().unwrap();
    let sink = Sink::start(&d.path().join("sink"), None);
    let t = tree(d.path(), sink.port);
    let base = git(&t, &["rev-parse", "HEAD"]);
    ok(&send(
        &t,
        d.path(),
        &fixture_series(),
        &["--confirm", "--from", "A Sender <sender@example.org>"],
    ));
    let mbox = d.path().join("captured.mbox");
    let text: String = sink
        .messages()
        .iter()
        .map(|m| format!("From mboxrd@z Thu Jan  1 00:00:00 1970\n{m}\n"))
        .collect();
    std::fs::write(&mbox, text).unwrap();
    let am = b4_am_is_apply(&t, &base, &mbox, d.path(), &d.path().join("cache"));
    assert_eq!(am.authors, ["Test Author <test@example.org>"; 2]);
    let patch = &sink.messages()[1];
    let header_from = patch.lines().find(|l| l.starts_with("From: ")).unwrap();
    assert!(header_from.contains("<sender@example.org>"), "{patch}");
    assert!(
        patch.contains("\n\nFrom: Test Author <test@example.org>\n\n"),
        "{patch}"
    );
}

/// A base that `tree import` made is no upstream commit: b4 users could
/// not find it. A send stops and names the flag; a dry run only warns.
#[test]
#[ignore = "needs aiosmtpd from PyPI (tests/run.sh installs it)"]
fn an_imported_base_is_refused_unless_said_to_be_upstream() {
    let d = tempfile::tempdir().unwrap();
    let sink = Sink::start(&d.path().join("sink"), None);
    let t = tree(d.path(), sink.port);
    git(
        &t,
        &[
            "commit",
            "-q",
            "--amend",
            "-m",
            "Import toy\n\nZcsplice-Import: tarball toy.tar.xz",
        ],
    );
    let o = send(&t, d.path(), &fixture_series(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("is not an upstream commit: `tree import` made it"),
        "{err}"
    );
    let o = send(&t, d.path(), &fixture_series(), &["--confirm"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--base-is-upstream"), "{err}");
    assert_eq!((sink.sessions(), sink.messages().len()), (0, 0));
    ok(&send(
        &t,
        d.path(),
        &fixture_series(),
        &["--confirm", "--base-is-upstream"],
    ));
    assert_eq!(sink.messages().len(), 3);
}

/// v2 after a template change: subjects say v2, the cover letter has the
/// changelog (patch numbers rendered for the tree), a link to v1's cover
/// letter and a range-diff that names the changed patch; the tags of both
/// revisions stay.
#[test]
#[ignore = "needs aiosmtpd from PyPI (tests/run.sh installs it)"]
fn the_next_revision_says_what_changed_since_the_last_one_sent() {
    let d = tempfile::tempdir().unwrap();
    let sink = Sink::start(&d.path().join("v1"), None);
    let t = tree(d.path(), sink.port);
    ok(&send(&t, d.path(), &fixture_series(), &["--confirm"]));
    let v1_cover = ids(&sink.messages())[0].clone();

    let series = d.path().join("series");
    copy_dir(&fixture_series(), &series);
    let yaml = series.join("patches/series.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replace("version: 1", "version: 2")).unwrap();
    // A revision after the first says what changed.
    let o = send(&t, d.path(), &series, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("patches/changes/v2.txt"));
    std::fs::create_dir_all(series.join("patches/changes")).unwrap();
    std::fs::write(
        series.join("patches/changes/v2.txt"),
        "- toy_helper() returns 2 (patch {{ n[\"add-helper\"] }})\n",
    )
    .unwrap();
    let helper = series.join("templates/helper.c.j2");
    let text = std::fs::read_to_string(&helper).unwrap();
    std::fs::write(&helper, text.replace("return 1;", "return 2;")).unwrap();

    let sink2 = Sink::start(&d.path().join("v2"), None);
    smtp_port(&t, sink2.port);
    ok(&send(&t, d.path(), &series, &["--confirm"]));
    let v2 = sink2.messages();
    assert_eq!(v2.len(), 3);
    assert!(
        v2[0].contains("Subject: [PATCH v2 0/2] toy: a fixture series"),
        "{}",
        v2[0]
    );
    assert!(v2[2].contains("Subject: [PATCH v2 2/2]"), "{}", v2[2]);
    let cover = &v2[0];
    let link = format!(
        "Changes in v2:\n- toy_helper() returns 2 (patch 1)\n- Link to v1: https://patch.msgid.link/{}",
        v1_cover.trim_matches(['<', '>'])
    );
    assert!(cover.contains(&link), "{cover}");
    let rd = cover
        .split("Range-diff against v1:\n")
        .nth(1)
        .unwrap_or_default();
    assert!(
        rd.contains("1:  ") && rd.contains(" ! 1:  ") && rd.contains("mm: add toy_helper()"),
        "{cover}"
    );
    assert!(
        rd.contains("-+\treturn 1;") && rd.contains("++\treturn 2;"),
        "{cover}"
    );
    assert!(
        rd.contains(" = 2:  ") && rd.contains("mm: use toy_helper()"),
        "{cover}"
    );
    assert!(cover.find("Range-diff").unwrap() < cover.find("base-commit: ").unwrap());
    let tags = git(&t, &["tag", "-l", "sent/*"]);
    assert_eq!(
        tags,
        "sent/20261126-fixture-0123456789ab-v1\nsent/20261126-fixture-0123456789ab-v2"
    );
}
