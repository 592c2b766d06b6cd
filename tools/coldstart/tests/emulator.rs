//! The harness against real binaries: the hello reference (built by Cargo for this test) and
//! a binary that exits at once. Debug builds, few runs, no zipping: checks behaviour, not speed.

use std::path::{Path, PathBuf};
use std::process::Command;

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
const COLDSTART: &str = env!("CARGO_BIN_EXE_coldstart");

/// A fresh directory under the target dir's tmp space, removed first if a previous run left it.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("coldstart-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn bin_dir_with(name: &str, links: &[(&str, &str)]) -> PathBuf {
    let dir = scratch(name);
    for (link, target) in links {
        std::os::unix::fs::symlink(target, dir.join(link)).expect("symlink");
    }
    dir
}

#[test]
fn measures_a_function_that_reaches_next() {
    let dir = bin_dir_with("ok", &[("hello", HELLO), ("fn", HELLO)]);
    let out = Command::new(COLDSTART)
        .args(["--bin-dir"])
        .arg(&dir)
        .args(["--runs", "3", "--no-zip", "fn", "absent"])
        .output()
        .expect("run coldstart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let fields: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(fields[0], "coldstart");
    assert_eq!(fields[1], "fn");
    for (field, key) in fields[2..]
        .iter()
        .zip(["init_ms", "hello_ms", "ratio", "zip_bytes"])
    {
        let (k, v) = field.split_once('=').expect("key=value");
        assert_eq!(k, key);
        let v: f64 = v.parse().expect("a number");
        assert!(v >= 0.0 && v.is_finite(), "{field}");
    }
    assert!(stderr.contains("note: absent: no binary"), "{stderr}");
    assert!(stderr.contains("# fn runs=3 "), "{stderr}");
}

#[test]
fn a_binary_that_exits_before_next_fails_the_run() {
    let dir = bin_dir_with("bad", &[("hello", HELLO), ("bad", "/bin/false")]);
    let out = Command::new(COLDSTART)
        .args(["--bin-dir"])
        .arg(&dir)
        .args(["--runs", "2", "--timeout-ms", "3000", "--no-zip", "bad"])
        .output()
        .expect("run coldstart");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("note: bad run 1: exited"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2() {
    let out = Command::new(COLDSTART)
        .args(["--runs", "0"])
        .output()
        .expect("run coldstart");
    assert_eq!(out.status.code(), Some(2));
}
