//! `scriptorium`: the server and its terminal entry points.

// The binary and the test and bench targets use the library; the package's other
// dependencies are the library's (rustc checks each target against all of them).
#![allow(unused_crate_dependencies)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use scriptorium::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "scriptorium",
    version,
    about = "Write, version, run and improve an ordered set of Python scripts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the web server.
    Serve {
        /// Data directory (git repository, database, runs).
        #[arg(long = "data")]
        data: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Configuration file (default: DATA/scriptorium.toml, then ./scriptorium.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Read a password from standard input and print its argon2 hash for scriptorium.toml.
    HashPassword,
    /// Run one script in the sandbox, in a fresh run directory, streaming its output.
    /// The first ARG is the input file (passed as argv[1]).
    Exec {
        #[arg(long)]
        interpreter: Option<String>,
        #[arg(long)]
        backend: Option<String>,
        /// Wall-clock limit in seconds.
        #[arg(long)]
        timeout: Option<f64>,
        /// Memory limit in MiB.
        #[arg(long)]
        memory: Option<u64>,
        /// stdout + stderr byte limit.
        #[arg(long = "output-limit")]
        output_limit: Option<u64>,
        /// interpreters.toml (default: as configured, else ./interpreters.toml).
        #[arg(long)]
        interpreters: Option<PathBuf>,
        script: PathBuf,
        args: Vec<String>,
    },
    /// The team in scriptorium.toml: list, add, disable, enable, reset-password. Passwords
    /// are read from standard input. Restart the server for a change to apply.
    Users {
        /// Configuration file (default: DATA/scriptorium.toml, then ./scriptorium.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory, where a new scriptorium.toml goes.
        #[arg(long = "data")]
        data: Option<PathBuf>,
        #[command(subcommand)]
        action: UsersAction,
    },
    /// List the interpreters from interpreters.toml and those detected on this machine.
    Interpreters {
        #[arg(long, default_value = "interpreters.toml")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Show each user, their roles and whether they are disabled.
    List,
    /// Add a user (password on standard input).
    Add {
        username: String,
        /// `viewer` or `editor`; repeat for both.
        #[arg(long = "role", required = true, value_parser = ["viewer", "editor"])]
        roles: Vec<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Stop a user from signing in (their sessions and tokens stop working; their branch stays).
    Disable { username: String },
    /// Let a disabled user sign in again.
    Enable { username: String },
    /// Set a new password (on standard input).
    ResetPassword { username: String },
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn users_command(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    action: UsersAction,
) -> anyhow::Result<()> {
    use scriptorium::users::{self, Change};
    let path = users::config_path(config, data);
    let change_done = |what: String| {
        println!(
            "{what} in {}; restart the server for it to apply",
            path.display()
        );
    };
    match action {
        UsersAction::List => {
            for u in users::list(&path)? {
                let roles: Vec<String> = u
                    .roles
                    .iter()
                    .map(|r| format!("{r:?}").to_lowercase())
                    .collect();
                let state = if u.disabled { " (disabled)" } else { "" };
                println!("{:<32} {}{state}", u.username, roles.join(","));
            }
        }
        UsersAction::Add {
            username,
            roles,
            email,
        } => {
            use scriptorium::auth::Role;
            let roles: Vec<Role> = roles
                .iter()
                .map(|r| {
                    if r == "editor" {
                        Role::Editor
                    } else {
                        Role::Viewer
                    }
                })
                .collect();
            let password = read_password()?;
            users::apply(
                &path,
                &Change::Add {
                    username: &username,
                    password: &password,
                    roles: &roles,
                    email: email.as_deref(),
                },
            )?;
            change_done(format!("added {username}"));
        }
        UsersAction::Disable { username } => {
            users::apply(&path, &Change::Disable(&username))?;
            change_done(format!("disabled {username}"));
        }
        UsersAction::Enable { username } => {
            users::apply(&path, &Change::Enable(&username))?;
            change_done(format!("enabled {username}"));
        }
        UsersAction::ResetPassword { username } => {
            let password = read_password()?;
            users::apply(
                &path,
                &Change::ResetPassword {
                    username: &username,
                    password: &password,
                },
            )?;
            change_done(format!("set a new password for {username}"));
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // The wasi backend's guest host: started by the server itself inside the process
    // sandbox, before any runtime, logging or argument parsing of the server.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == scriptorium_sandbox::wasi::host::SUBCOMMAND)
    {
        std::process::exit(scriptorium_sandbox::wasi::host::host_main(
            std::env::args_os().skip(1),
        ));
    }
    // The linux backend's zygote, which forks sandboxes for the server: started by
    // the server itself, before anything else of it runs.
    #[cfg(target_os = "linux")]
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == scriptorium_sandbox::linux::ZYGOTE_SUBCOMMAND)
    {
        std::process::exit(scriptorium_sandbox::linux::zygote_main());
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,scriptorium=info,scriptorium_actors=info,tower_http=info")
        }))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            data,
            listen,
            config,
        } => {
            let config = Config::load(&Overrides {
                config,
                data_dir: data,
                listen,
            })?
            .absolutize();
            scriptorium::memory::tune();
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                scriptorium::memory::spawn_trimmer();
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot listen on {}; is another server running there?",
                            config.listen
                        )
                    })?;
                scriptorium::server::run(config, listener, shutdown_signal()).await
            })
        }
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "give the password on standard input");
            println!("{}", scriptorium::auth::hash_password(password));
            Ok(())
        }
        Command::Exec {
            interpreter,
            backend,
            timeout,
            memory,
            output_limit,
            interpreters,
            script,
            args,
        } => {
            let config = Config::load(&Overrides::default())?;
            let rt = tokio::runtime::Runtime::new()?;
            let code = rt.block_on(scriptorium::exec::run(
                &config,
                scriptorium::exec::ExecArgs {
                    interpreter,
                    backend,
                    timeout,
                    memory,
                    output_limit,
                    interpreters,
                    script,
                    args,
                },
            ))?;
            std::process::exit(code);
        }
        Command::Users {
            config,
            data,
            action,
        } => users_command(config, data, action),
        Command::Interpreters { file } => {
            let reg = scriptorium_sandbox::Registry::load(&file)?;
            for i in reg.all() {
                let default = if reg.default_id() == Some(i.id.as_str()) {
                    " (default)"
                } else {
                    ""
                };
                let backends: Vec<&str> = i.backends.iter().map(|b| b.as_str()).collect();
                match &i.problem {
                    None => println!(
                        "{:<22} {} {:<10} {:<10} {}{}",
                        i.id,
                        i.implementation,
                        i.version,
                        backends.join(","),
                        i.path.display(),
                        default
                    ),
                    Some(p) => println!("{:<22} unavailable: {p}", i.id),
                }
            }
            Ok(())
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
