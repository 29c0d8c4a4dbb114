//! `scriptorium-job-probe`: a small Windows program that plays a hostile script for the
//! job-object tests (`sandbox/tests/windows.rs`), where no Windows CPython can be
//! installed from the package registries. It is started as an interpreter would be
//! (`PROBE -I -u SCRIPT [INPUT] [ARGS]`) and does what the script file's first line
//! says:
//!
//! - `print WORDS…` — prints the words and the input path
//! - `env` — prints its environment, one `NAME=VALUE` a line
//! - `spawn N SECS` — starts N children that sleep SECS; prints `started K of N`
//! - `orphan SECS FILE` — starts a child that writes `FILE.started` at once and FILE
//!   after SECS, and exits at once
//! - `hold SECS FILE` — the same, then sleeps for ever
//! - `alloc MIB` — allocates and touches MIB MiB; `MemoryError` on failure
//! - `spin SECS` — burns CPU for SECS seconds
//! - `sleep SECS`
//! - `flood BYTES` — prints BYTES bytes of lines
//! - `atom NAME` — adds a global atom NAME (a UI-restricted job gets its own table)

// A helper binary links every dependency of the package and uses few.
#![allow(unused_crate_dependencies)]

#[cfg(not(windows))]
fn main() {
    eprintln!("scriptorium-job-probe is a Windows test program");
    std::process::exit(2);
}

#[cfg(windows)]
fn main() {
    std::process::exit(windows_probe::main());
}

#[cfg(windows)]
mod windows_probe {
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    pub(super) fn main() -> i32 {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.first().map(String::as_str) == Some("--child") {
            return child(&args[1..]);
        }
        // Interpreter options first, as `python -I -u SCRIPT INPUT`.
        let mut rest = args.iter().skip_while(|a| a.starts_with('-'));
        let Some(script) = rest.next() else {
            eprintln!("usage: scriptorium-job-probe [-OPTIONS] SCRIPT [INPUT]");
            return 2;
        };
        let input = rest.next().cloned();
        let text = match std::fs::read_to_string(script) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("cannot read {script}: {e}");
                return 2;
            }
        };
        let words: Vec<&str> = text
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        command(&words, input)
    }

    fn num(words: &[&str], i: usize) -> u64 {
        words.get(i).and_then(|w| w.parse().ok()).unwrap_or(0)
    }

    fn me() -> PathBuf {
        std::env::current_exe().expect("own path")
    }

    fn command(words: &[&str], input: Option<String>) -> i32 {
        match words.first().copied().unwrap_or("") {
            "print" => {
                println!("{}", words[1..].join(" "));
                if let Some(i) = input {
                    println!(
                        "input: {}",
                        std::fs::read_to_string(i).unwrap_or_default().trim()
                    );
                }
                0
            }
            "env" => {
                for (k, v) in std::env::vars_os() {
                    println!("{}={}", k.to_string_lossy(), v.to_string_lossy());
                }
                0
            }
            "spawn" => {
                let (n, secs) = (num(words, 1), num(words, 2));
                let mut children = Vec::new();
                for _ in 0..n {
                    match Command::new(me())
                        .args(["--child", "sleep", &secs.to_string()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                    {
                        Ok(c) => children.push(c),
                        Err(e) => eprintln!("spawn refused: {e}"),
                    }
                }
                // A child the job refused may be created and then killed at once.
                std::thread::sleep(Duration::from_millis(500));
                let alive = children
                    .iter_mut()
                    .map(|c| c.try_wait())
                    .filter(|w| matches!(w, Ok(None)))
                    .count();
                println!("started {alive} of {n}");
                0
            }
            "orphan" | "hold" => {
                let spawned = Command::new(me())
                    .args([
                        "--child",
                        "late",
                        words.get(1).copied().unwrap_or("1"),
                        words.get(2).copied().unwrap_or("late.txt"),
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                match spawned {
                    Ok(_) => println!("child started"),
                    Err(e) => println!("child refused: {e}"),
                }
                // Exit only once the child runs, so the job has something to kill.
                let started = format!("{}.started", words.get(2).copied().unwrap_or("late.txt"));
                let deadline = Instant::now() + Duration::from_secs(15);
                while !std::path::Path::new(&started).exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = std::io::stdout().flush();
                if words[0] == "hold" {
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                0
            }
            "alloc" => {
                let bytes = num(words, 1) as usize * 1024 * 1024;
                let mut v: Vec<u8> = Vec::new();
                if v.try_reserve_exact(bytes).is_err() {
                    eprintln!("MemoryError: could not allocate {} MiB", num(words, 1));
                    return 1;
                }
                // Touch every page so the memory is committed and used.
                v.resize(bytes, 1);
                println!("allocated {} MiB", v.len() / (1024 * 1024));
                0
            }
            "spin" => {
                let end = Instant::now() + Duration::from_secs(num(words, 1));
                let mut x: u64 = 0;
                while Instant::now() < end {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                println!("spun {}", x % 2);
                0
            }
            "sleep" => {
                std::thread::sleep(Duration::from_secs(num(words, 1)));
                println!("slept");
                0
            }
            "flood" => {
                let line = "x".repeat(99);
                let mut out = std::io::stdout().lock();
                let mut written = 0;
                while written < num(words, 1) {
                    if writeln!(out, "{line}").is_err() {
                        return 1;
                    }
                    written += 100;
                }
                0
            }
            "atom" => atom(words.get(1).copied().unwrap_or("scriptorium-probe")),
            other => {
                eprintln!("unknown probe command `{other}`");
                2
            }
        }
    }

    fn atom(name: &str) -> i32 {
        use windows_sys::Win32::System::DataExchange::GlobalAddAtomW;
        let wide: Vec<u16> = name.encode_utf16().chain([0]).collect();
        // SAFETY: a NUL-terminated UTF-16 string.
        let atom = unsafe { GlobalAddAtomW(wide.as_ptr()) };
        if atom == 0 {
            println!("atom refused: {}", std::io::Error::last_os_error());
        } else {
            println!("atom added");
        }
        0
    }

    /// `--child sleep SECS` or `--child late SECS FILE`.
    fn child(args: &[String]) -> i32 {
        let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
        // Proof that it ran at all, so a test cannot pass because it never started.
        if let Some(file) = args.get(2) {
            let _ = std::fs::write(format!("{file}.started"), "started");
        }
        std::thread::sleep(Duration::from_secs(secs));
        if args.first().map(String::as_str) == Some("late")
            && let Some(file) = args.get(2)
        {
            let _ = std::fs::write(file, "outlived the run");
        }
        0
    }
}
