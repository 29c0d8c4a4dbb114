//! Disk: quotas on bytes and on files, the final measurement after a quick writer, sparse
//! files counted by their blocks, a full /tmp, and symlink bombs the walk does not follow.

use super::*;

/// Finding 6: 600 MiB of artifacts in files of 100 MiB (each under the file-size limit)
/// under a 256 MiB disk quota.
#[tokio::test]
async fn six_hundred_mib_in_100_mib_files_hit_a_256_mib_disk_quota() {
    let sb = Sandbox::new();
    let script = r#"
import time
chunk = b"y" * (1024 * 1024)
for i in range(6):
    with open(f"part{i}.bin", "wb") as f:
        for _ in range(100):
            f.write(chunk)
    print("wrote", i, flush=True)
    time.sleep(0.4)
print("all written", flush=True)
time.sleep(2)
"#;
    let l = Limits {
        disk_mib: 256,
        file_size_mib: 128,
        ..limits()
    };
    let (report, out) = run(&sb, script, l.clone()).await;
    assert_eq!(
        limit_of(&report),
        Some(Limit::Disk),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
    assert!(
        !out.text(Stream::Stdout).contains("all written"),
        "{}",
        text(&out)
    );
    assert!(
        report.outcome.message().contains("256 MiB"),
        "{}",
        report.outcome.message()
    );
    assert!(report.protections.disk_quota, "{:?}", report.protections);
}

/// Finding 6: 20000 empty files under a 10000-file quota.
#[tokio::test]
async fn twenty_thousand_empty_files_hit_the_file_count_quota() {
    let sb = Sandbox::new();
    let script = r#"
import os
os.mkdir("many")
for i in range(20000):
    open(f"many/{i}", "w").close()
print("made 20000 files", flush=True)
import time
time.sleep(2)
"#;
    let l = Limits {
        disk_files: 10000,
        ..limits()
    };
    let (report, out) = run(&sb, script, l).await;
    assert_eq!(
        limit_of(&report),
        Some(Limit::Disk),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
    assert!(
        report.outcome.message().contains("10000 files"),
        "{}",
        report.outcome.message()
    );
}

/// Writing fast and exiting before the watcher looks still ends in the disk limit: the
/// usage is measured once more at the end.
#[tokio::test]
async fn a_quick_writer_is_caught_by_the_final_measurement() {
    let sb = Sandbox::new();
    let script = "chunk = b'z' * (1024 * 1024)\nfor i in range(3):\n    open(f'q{i}', 'wb').write(chunk * 60)\n";
    let l = Limits {
        disk_mib: 64,
        ..limits()
    };
    let (report, out) = run(&sb, script, l).await;
    assert_eq!(
        limit_of(&report),
        Some(Limit::Disk),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
}

/// A sparse file counts what it really uses: a 100 GiB hole is not a full disk (it
/// passes), and a sparse file cannot make the server read or copy 100 GiB.
#[tokio::test]
async fn a_sparse_file_counts_its_blocks_not_its_length() {
    let sb = Sandbox::new();
    let script = r#"
with open("sparse.bin", "wb") as f:
    f.truncate(100 * 1024**3)
    f.write(b"end")
print("sparse made")
"#;
    let l = Limits {
        file_size_mib: 200 * 1024,
        ..limits()
    };
    let (report, out) = run(&sb, script, l).await;
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
    assert_eq!(
        std::fs::symlink_metadata(sb.run_dir().join("sparse.bin"))
            .unwrap()
            .len(),
        100 * 1024u64.pow(3)
    );
}

/// The private /tmp is bounded too: filling it ends the run with the disk limit (or,
/// once /tmp is a size-bounded tmpfs, with "no space left", which the run names).
#[tokio::test]
async fn filling_tmp_is_a_disk_limit() {
    let sb = Sandbox::new();
    let script = r#"
import time
chunk = b"t" * (1024 * 1024)
for i in range(8):
    with open(f"/tmp/fill{i}", "wb") as f:
        for _ in range(50):
            f.write(chunk)
    time.sleep(0.3)
print("tmp filled", flush=True)
time.sleep(2)
"#;
    let l = Limits {
        disk_mib: 128,
        memory_mib: 1024,
        ..limits()
    };
    let (report, out) = run(&sb, script, l).await;
    assert!(
        !out.text(Stream::Stdout).contains("tmp filled"),
        "{}",
        text(&out)
    );
    assert_eq!(
        limit_of(&report),
        Some(Limit::Disk),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
}

/// A symlink bomb: links to /, to /dev/zero and to each other, and a deep loop of them,
/// left in the run directory. The watcher never follows one (it would count the whole
/// host or spin): the run ends normally and quickly.
#[tokio::test]
async fn symlink_bombs_are_not_followed_by_the_quota_walk() {
    let sb = Sandbox::new();
    let script = r#"
import os
os.symlink("/", "root")
os.symlink("/dev/zero", "zero")
os.symlink("loop_b", "loop_a")
os.symlink("loop_a", "loop_b")
os.mkdir("d")
os.symlink("..", "d/up")
for i in range(50):
    os.symlink(f"link{i+1}", f"link{i}")
import time
time.sleep(1)
print("links made")
"#;
    let started = Instant::now();
    let (report, out) = run(
        &sb,
        script,
        Limits {
            disk_mib: 16,
            disk_files: 200,
            ..limits()
        },
    )
    .await;
    assert!(
        report.outcome.success(),
        "{:?}\n{}",
        report.outcome,
        text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
