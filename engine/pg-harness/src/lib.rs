//! Throwaway PostgreSQL clusters for tests and demos.
//!
//! The platform's tests run against real PostgreSQL, never a mock (design §10). This crate gives
//! each test its own cluster: a fresh `initdb` in a temporary directory, a `postgres` server started
//! directly (no systemd, no `pg_ctl`) on a free TCP port of `127.0.0.1`, and a Unix socket directory
//! inside the same temporary directory so that clusters never fight over `/var/run/postgresql`.
//!
//! # How a cluster comes up
//!
//! 1. **Binaries.** [`find_bin_dir`] looks at `KALSHI_PG_BIN`, then the highest version under
//!    `/usr/lib/postgresql/*/bin` (Debian's layout), then the directory of `pg_ctl` on `PATH`. When
//!    none is there, the error tells you to install the Debian package `postgresql`.
//! 2. **User.** `initdb` and `postgres` refuse to run as root. When this process is root, the
//!    harness gives the temporary directory to the `postgres` system user and starts both programs
//!    with that user's uid and gid (through [`std::os::unix::process::CommandExt`]); otherwise they
//!    run as the current user.
//! 3. **Settings.** The server is tuned for tests, not durability against power loss: `fsync` and
//!    `full_page_writes` are off and `shared_buffers` is small, so that many clusters fit on a
//!    small machine at once. `synchronous_commit` stays **on**: with it off, a commit is
//!    acknowledged before its WAL leaves shared memory, so [`PgCluster::kill`] would lose
//!    acknowledged transactions and crash tests ("nothing lost") would fail for the wrong reason.
//!    With `fsync` off a synchronous commit is only a `write(2)` into the page cache, which
//!    survives the SIGKILL of the server. Pass `.setting("synchronous_commit", "off")` where
//!    losing the last commits on a kill does not matter.
//! 4. **Readiness.** The harness does not poll with a client: it reads `postmaster.pid` in the data
//!    directory, as `pg_ctl` does, and waits until the postmaster whose pid it spawned reports
//!    `ready`. That cannot be fooled by a different server that happens to answer on the same port.
//!    The wait is bounded; a timeout or an early exit is an error that quotes the end of the server
//!    log.
//! 5. **Ports.** A port is chosen by binding `127.0.0.1:0`, remembered in a process-wide set so two
//!    threads never pick the same one, and if the server still fails to bind it (another process
//!    took it in between) the harness picks another port and tries again.
//! 6. **Database.** Unless told not to, it creates the database `kalshi` with `createdb`.
//!
//! # Faults and cleanup
//!
//! [`PgCluster::stop`] asks for a fast shutdown (SIGINT), [`PgCluster::start_again`] restarts the
//! same data directory on the same port, and [`PgCluster::kill`] SIGKILLs the postmaster to inject a
//! crash (the next start runs crash recovery). Dropping a [`PgCluster`] stops the server (killing it
//! if a fast shutdown does not finish), makes sure none of its backend processes are left, and
//! removes the temporary directory.
//!
//! ```no_run
//! use kalshi_pg_harness::{PgCluster, PgOptions};
//!
//! let cluster = PgCluster::start(PgOptions::default())?;
//! println!("connect to {}", cluster.url("kalshi"));
//! # Ok::<(), kalshi_pg_harness::HarnessError>(())
//! ```

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};

/// The host every cluster listens on.
pub const HOST: &str = "127.0.0.1";

/// The database created by default, the platform's database name (design §9).
pub const DEFAULT_DATABASE: &str = "kalshi";

/// The superuser `initdb` creates in every cluster.
pub const SUPERUSER: &str = "postgres";

/// How many different ports [`PgCluster::start`] tries before giving up.
const PORT_ATTEMPTS: usize = 10;

/// How long a fast shutdown may take before the harness escalates to SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long orphaned backends get to notice their postmaster died before they are SIGKILLed.
const ORPHAN_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variables of libpq that must not leak into the helper programs we run.
const LIBPQ_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGDATA",
];

/// Ports handed out by this process and not yet released, so concurrent threads never collide.
static PORTS_IN_USE: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Everything that can go wrong while starting, stopping or killing a cluster.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No directory with both `initdb` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found; searched {searched}. \
         Install the Debian package `postgresql` (apt-get install -y postgresql) \
         or set KALSHI_PG_BIN to the directory that holds them"
    )]
    BinariesNotFound {
        /// The places that were looked at, for the message.
        searched: String,
    },
    /// We are root and the unprivileged user to run the server as does not exist.
    #[error(
        "running as root, but the system user `{user}` that should own the cluster does not exist \
         (the Debian package `postgresql` creates it: apt-get install -y postgresql)"
    )]
    UnknownUser {
        /// The user name that was looked up.
        user: String,
    },
    /// Looking up the system user failed.
    #[error("could not look up system user `{user}`: {source}")]
    UserLookup {
        /// The user name that was looked up.
        user: String,
        /// The error from the passwd lookup.
        source: nix::Error,
    },
    /// A filesystem operation on the cluster's directory failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create the temporary directory in".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A program could not be started at all.
    #[error("could not run {}: {source}", program.display())]
    Spawn {
        /// The program that failed to start.
        program: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A helper program (`initdb`, `createdb`) ran and failed.
    #[error("{} failed ({status}):\n{output}", program.display())]
    CommandFailed {
        /// The program that failed.
        program: PathBuf,
        /// Its exit status.
        status: String,
        /// Its standard output and error.
        output: String,
    },
    /// The server did not report `ready` within the startup timeout.
    #[error(
        "PostgreSQL on port {port} was not ready after {waited:?}; end of server log {}:\n{log_tail}",
        log_path.display()
    )]
    StartTimeout {
        /// The port the server was started on.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// Where the full server log is.
        log_path: PathBuf,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// The server exited while starting.
    #[error(
        "PostgreSQL on port {port} exited while starting ({status}); end of server log {}:\n{log_tail}",
        log_path.display()
    )]
    ServerExited {
        /// The port the server was started on.
        port: u16,
        /// How it exited.
        status: String,
        /// Where the full server log is.
        log_path: PathBuf,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// Every port tried was taken by someone else by the time the server tried to bind it.
    #[error(
        "PostgreSQL could not bind a free port after {attempts} attempts; end of server log:\n{log_tail}"
    )]
    NoFreePort {
        /// How many ports were tried.
        attempts: usize,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// Sending a signal to the server failed.
    #[error("could not send {signal} to PostgreSQL process {pid}: {source}")]
    Signal {
        /// The process the signal was for.
        pid: i32,
        /// The signal.
        signal: Signal,
        /// The error from `kill(2)`.
        source: nix::Error,
    },
    /// Waiting for the server process failed.
    #[error("could not wait for PostgreSQL process {pid}: {source}")]
    Wait {
        /// The process waited for.
        pid: u32,
        /// The underlying error.
        source: std::io::Error,
    },
    /// [`PgCluster::start_again`] was called while the server is running.
    #[error("PostgreSQL on port {port} is already running (pid {pid})")]
    AlreadyRunning {
        /// The port of the running server.
        port: u16,
        /// The postmaster's pid.
        pid: u32,
    },
}

/// How to start a cluster. [`PgOptions::default`] is what most tests want.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The database to create after start (`Some("kalshi")` by default); `None` creates nothing
    /// beyond the `postgres` database that `initdb` makes.
    pub database: Option<String>,
    /// How long to wait for the server to report `ready`, for each start (60 s by default).
    pub startup_timeout: Duration,
    /// Extra server settings, passed as `-c name=value` after the harness's own, so they win.
    pub settings: Vec<(String, String)>,
    /// Use the binaries in this directory instead of searching (see [`find_bin_dir`]).
    pub bin_dir: Option<PathBuf>,
    /// Create the temporary directory under this directory instead of the system's temp dir.
    /// When running as root it must be traversable by the `postgres` user.
    pub temp_parent: Option<PathBuf>,
    /// When this process is root, run the server as this system user (`postgres` by default).
    pub run_as_user: String,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            database: Some(DEFAULT_DATABASE.to_owned()),
            startup_timeout: Duration::from_secs(60),
            settings: Vec::new(),
            bin_dir: None,
            temp_parent: None,
            run_as_user: SUPERUSER.to_owned(),
        }
    }
}

impl PgOptions {
    /// Do not create any database after start.
    #[must_use]
    pub fn without_database(mut self) -> Self {
        self.database = None;
        self
    }

    /// Create `name` after start instead of `kalshi`.
    #[must_use]
    pub fn database(mut self, name: &str) -> Self {
        self.database = Some(name.to_owned());
        self
    }

    /// Add a server setting (`-c name=value`).
    #[must_use]
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running (or stopped) throwaway PostgreSQL cluster. See the crate documentation.
#[derive(Debug)]
pub struct PgCluster {
    /// The postmaster, while it runs.
    child: Option<Child>,
    port: u16,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    run_as: Option<(u32, u32)>,
    settings: Vec<(String, String)>,
    startup_timeout: Duration,
    /// Dropped last: removes the whole directory, data and all.
    temp: tempfile::TempDir,
}

impl PgCluster {
    /// Initialise a new cluster in a temporary directory, start it on a free port and create the
    /// requested database.
    ///
    /// # Errors
    ///
    /// Any [`HarnessError`]: binaries or the `postgres` user missing, `initdb` failing, the server
    /// not becoming ready in time, or `createdb` failing.
    pub fn start(opts: PgOptions) -> Result<PgCluster, HarnessError> {
        let bin_dir = match &opts.bin_dir {
            Some(dir) if has_server_binaries(dir) => dir.clone(),
            Some(dir) => {
                return Err(HarnessError::BinariesNotFound {
                    searched: format!("bin_dir {}", dir.display()),
                });
            }
            None => find_bin_dir()?,
        };
        let run_as = if geteuid().is_root() {
            Some(lookup_user(&opts.run_as_user)?)
        } else {
            None
        };

        let parent = opts.temp_parent.clone().unwrap_or_else(std::env::temp_dir);
        let temp = tempfile::Builder::new()
            .prefix("kalshi-pg-")
            .tempdir_in(&parent)
            .map_err(|source| HarnessError::Io {
                action: "create the temporary directory in",
                path: parent.clone(),
                source,
            })?;
        let root = temp.path().to_path_buf();
        let data_dir = root.join("data");
        let socket_dir = root.join("sock");
        let log_path = root.join("postgres.log");
        fs::create_dir(&socket_dir).map_err(|source| HarnessError::Io {
            action: "create the socket directory",
            path: socket_dir.clone(),
            source,
        })?;
        File::create(&log_path).map_err(|source| HarnessError::Io {
            action: "create the server log",
            path: log_path.clone(),
            source,
        })?;
        if let Some((uid, gid)) = run_as {
            for path in [&root, &socket_dir, &log_path] {
                chown(path, Some(uid), Some(gid)).map_err(|source| HarnessError::Io {
                    action: "give the cluster directory to the server user:",
                    path: path.clone(),
                    source,
                })?;
            }
        }

        let mut cluster = PgCluster {
            child: None,
            port: 0,
            bin_dir,
            data_dir,
            socket_dir,
            log_path,
            run_as,
            settings: opts.settings.clone(),
            startup_timeout: opts.startup_timeout,
            temp,
        };
        cluster.initdb()?;
        cluster.start_on_free_port()?;
        if let Some(db) = &opts.database {
            cluster.createdb(db)?;
        }
        Ok(cluster)
    }

    /// The TCP port the server listens on (the same across [`PgCluster::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host the server listens on: always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// A libpq URL for database `db` as the superuser `postgres`, e.g.
    /// `postgresql://postgres@127.0.0.1:54321/kalshi`.
    pub fn url(&self, db: &str) -> String {
        self.conn_string(db, SUPERUSER)
    }

    /// A libpq URL for database `db` as `user` (no password: the cluster trusts local
    /// connections).
    pub fn conn_string(&self, db: &str, user: &str) -> String {
        format!("postgresql://{user}@{HOST}:{}/{db}", self.port)
    }

    /// The cluster's data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The temporary directory that holds everything; removed on drop.
    pub fn root_dir(&self) -> &Path {
        self.temp.path()
    }

    /// The postmaster's process id while it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the postmaster is running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The last lines of the server log, for error messages and test diagnostics.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 0)
    }

    /// Stop the server with a fast shutdown (SIGINT: roll back open transactions, disconnect
    /// clients, checkpoint). Escalates to [`PgCluster::kill`] if it takes longer than 30 s.
    /// Stopping a stopped cluster does nothing.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Signal`] or [`HarnessError::Wait`] if the process cannot be signalled or
    /// waited for.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        if !self.is_running() {
            self.child = None;
            return Ok(());
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        send_signal(pid, Signal::SIGINT)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                    return Ok(());
                }
                Ok(None) => sleep(Duration::from_millis(20)),
                Err(source) => return Err(HarnessError::Wait { pid, source }),
            }
        }
        self.kill()
    }

    /// Start the server again on the same port and data directory after [`PgCluster::stop`] or
    /// [`PgCluster::kill`] (after a kill, PostgreSQL runs crash recovery first).
    ///
    /// # Errors
    ///
    /// [`HarnessError::AlreadyRunning`] if it is running; otherwise the start errors of
    /// [`PgCluster::start`] (for example when another process took the port meanwhile).
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Err(HarnessError::AlreadyRunning {
                port: self.port,
                pid: self.pid().unwrap_or(0),
            });
        }
        self.spawn_and_wait(self.port)
    }

    /// Crash the server: SIGKILL the postmaster, as a fault injection. Its backends notice their
    /// postmaster died and exit on their own; any that are still there after 10 s are SIGKILLed
    /// too, so nothing is left holding the shared memory. Killing a stopped cluster does nothing.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Signal`] or [`HarnessError::Wait`] if the process cannot be signalled or
    /// waited for.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        let orphans = children_of(pid);
        if let Ok(None) = child.try_wait() {
            // ESRCH means it died just now; the wait below reaps it either way.
            match kill(to_pid(pid), Signal::SIGKILL) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(source) => {
                    self.child = Some(child);
                    return Err(HarnessError::Signal {
                        pid: to_pid(pid).as_raw(),
                        signal: Signal::SIGKILL,
                        source,
                    });
                }
            }
        }
        child
            .wait()
            .map_err(|source| HarnessError::Wait { pid, source })?;
        reap_orphans(&orphans);
        Ok(())
    }

    /// Run `initdb` for the data directory.
    fn initdb(&self) -> Result<(), HarnessError> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run_checked(cmd, &self.bin_dir.join("initdb"))
    }

    /// Create database `name` with `createdb`.
    fn createdb(&self, name: &str) -> Result<(), HarnessError> {
        let mut cmd = self.command("createdb");
        cmd.args([
            "-h",
            HOST,
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            name,
        ]);
        run_checked(cmd, &self.bin_dir.join("createdb"))
    }

    /// A command for one of the cluster's programs, running as the cluster's user, in its
    /// directory, with libpq's environment variables removed.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir(self.temp.path()).stdin(Stdio::null());
        for var in LIBPQ_ENV {
            cmd.env_remove(var);
        }
        if let Some((uid, gid)) = self.run_as {
            // std also clears the supplementary groups when a root parent sets the uid.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Choose a port, start the server on it, and retry with another port when someone else
    /// binds it first.
    fn start_on_free_port(&mut self) -> Result<(), HarnessError> {
        let mut last_tail = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = reserve_port()?;
            match self.spawn_and_wait(port) {
                Ok(()) => return Ok(()),
                Err(HarnessError::ServerExited { log_tail, .. })
                    if log_tail.contains("Address already in use")
                        || log_tail.contains("could not bind") =>
                {
                    release_port(port);
                    last_tail = log_tail;
                }
                Err(err) => {
                    release_port(port);
                    return Err(err);
                }
            }
        }
        Err(HarnessError::NoFreePort {
            attempts: PORT_ATTEMPTS,
            log_tail: last_tail,
        })
    }

    /// Spawn the postmaster on `port` and wait until it reports `ready`.
    fn spawn_and_wait(&mut self, port: u16) -> Result<(), HarnessError> {
        let log_start = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(|source| HarnessError::Io {
                action: "open the server log",
                path: self.log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| HarnessError::Io {
            action: "duplicate the handle of the server log",
            path: self.log_path.clone(),
            source,
        })?;

        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(&self.data_dir);
        cmd.arg("-p").arg(port.to_string());
        let sock = self.socket_dir.display().to_string();
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", HOST),
            ("unix_socket_directories", sock.as_str()),
            ("fsync", "off"),
            // Deliberately on: see the crate documentation ("Settings").
            ("synchronous_commit", "on"),
            ("full_page_writes", "off"),
            ("shared_buffers", "32MB"),
            ("max_connections", "60"),
            ("max_locks_per_transaction", "256"),
            ("huge_pages", "off"),
            ("logging_collector", "off"),
            ("log_min_messages", "warning"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        settings.extend(self.settings.iter().cloned());
        for (name, value) in &settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log_err));

        let program = self.bin_dir.join("postgres");
        let child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = child.id();
        self.child = Some(child);
        self.port = port;

        let started = Instant::now();
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => None,
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(source)) => return Err(HarnessError::Wait { pid, source }),
                None => Some("gone".to_owned()),
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(HarnessError::ServerExited {
                    port,
                    status,
                    log_path: self.log_path.clone(),
                    log_tail: log_tail(&self.log_path, log_start),
                });
            }
            if postmaster_ready(&self.data_dir, pid) {
                return Ok(());
            }
            if started.elapsed() > self.startup_timeout {
                let tail = log_tail(&self.log_path, log_start);
                // Do not leave a half-started server behind.
                let _ignored = self.kill();
                return Err(HarnessError::StartTimeout {
                    port,
                    waited: started.elapsed(),
                    log_path: self.log_path.clone(),
                    log_tail: tail,
                });
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.stop().is_err() {
            let _ignored = self.kill();
        }
        release_port(self.port);
        // `temp` is dropped after this and removes the directory.
    }
}

/// Find the directory holding the PostgreSQL server binaries: `KALSHI_PG_BIN` if set, else the
/// highest version under `/usr/lib/postgresql/*/bin`, else the directory of `pg_ctl` on `PATH`.
///
/// # Errors
///
/// [`HarnessError::BinariesNotFound`], whose message says to install the Debian package
/// `postgresql`.
pub fn find_bin_dir() -> Result<PathBuf, HarnessError> {
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os("KALSHI_PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        searched.push(format!("KALSHI_PG_BIN={}", dir.display()));
    }

    let debian = Path::new("/usr/lib/postgresql");
    searched.push(format!("{}/*/bin", debian.display()));
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            let bin = entry.path().join("bin");
            version
                .filter(|_| has_server_binaries(&bin))
                .map(|v| (v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }

    searched.push("pg_ctl on PATH".to_owned());
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").is_file() && has_server_binaries(&dir) {
                return Ok(dir);
            }
        }
    }
    Err(HarnessError::BinariesNotFound {
        searched: searched.join(", "),
    })
}

/// Whether `dir` has both `initdb` and `postgres`.
fn has_server_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// The uid and gid of system user `name`.
fn lookup_user(name: &str) -> Result<(u32, u32), HarnessError> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok((user.uid.as_raw(), user.gid.as_raw())),
        Ok(None) => Err(HarnessError::UnknownUser {
            user: name.to_owned(),
        }),
        Err(source) => Err(HarnessError::UserLookup {
            user: name.to_owned(),
            source,
        }),
    }
}

/// Run a helper program to completion; a non-zero exit is an error carrying its output.
fn run_checked(mut cmd: Command, program: &Path) -> Result<(), HarnessError> {
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        program: program.to_path_buf(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(HarnessError::CommandFailed {
        program: program.to_path_buf(),
        status: out.status.to_string(),
        output,
    })
}

/// Pick a port that the OS says is free and that no other cluster of this process holds.
fn reserve_port() -> Result<u16, HarnessError> {
    let mut guard = PORTS_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
    let used = guard.get_or_insert_with(HashSet::new);
    loop {
        let listener = TcpListener::bind((HOST, 0)).map_err(|source| HarnessError::Io {
            action: "bind a probe socket to find a free port on",
            path: PathBuf::from(HOST),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| HarnessError::Io {
                action: "read the address of the probe socket on",
                path: PathBuf::from(HOST),
                source,
            })?
            .port();
        if used.insert(port) {
            return Ok(port);
        }
    }
}

/// Forget a port reserved by [`reserve_port`].
fn release_port(port: u16) {
    let mut guard = PORTS_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(used) = guard.as_mut() {
        used.remove(&port);
    }
}

/// Whether `postmaster.pid` in `data_dir` names `pid` and says `ready` (its eighth line).
fn postmaster_ready(data_dir: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
        && lines.get(7).map(|l| l.trim()) == Some("ready")
}

/// The last 40 lines of the log written after byte `from`.
fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = from.max(len.saturating_sub(16 * 1024));
        if file.seek(SeekFrom::Start(start)).is_ok() {
            let mut bytes = Vec::new();
            let _ignored = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Convert a std process id to nix's type.
fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Send `signal` to `pid`.
fn send_signal(pid: u32, signal: Signal) -> Result<(), HarnessError> {
    kill(to_pid(pid), signal).map_err(|source| HarnessError::Signal {
        pid: to_pid(pid).as_raw(),
        signal,
        source,
    })
}

/// The state letter and parent pid of a process from `/proc/PID/stat`, if it exists.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything; parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// The live children of process `parent` (Linux `/proc`; empty elsewhere).
fn children_of(parent: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| matches!(proc_stat(pid), Some((_, ppid)) if ppid == parent))
        .collect()
}

/// Wait for the former children of a killed postmaster to exit, SIGKILLing any that linger.
fn reap_orphans(orphans: &[u32]) {
    let deadline = Instant::now() + ORPHAN_TIMEOUT;
    while orphans.iter().any(|&p| process_alive(p)) {
        if Instant::now() > deadline {
            for &p in orphans {
                if process_alive(p) {
                    let _ignored = kill(to_pid(p), Signal::SIGKILL);
                }
            }
            let hard = Instant::now() + Duration::from_secs(2);
            while orphans.iter().any(|&p| process_alive(p)) && Instant::now() < hard {
                sleep(Duration::from_millis(10));
            }
            return;
        }
        sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Checks the `postmaster.pid` readiness parser: only the pid we spawned with status `ready`
    // counts, by writing sample lock files into a temporary directory.
    #[test]
    fn readiness_reads_pid_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let write = |status: &str| {
            let text = format!("4242\n/d\n1\n5432\n/s\n127.0.0.1\n  1 2\n{status}\n");
            fs::write(dir.path().join("postmaster.pid"), text).unwrap();
        };
        assert!(!postmaster_ready(dir.path(), 4242));
        write("starting");
        assert!(!postmaster_ready(dir.path(), 4242));
        write("ready   ");
        assert!(postmaster_ready(dir.path(), 4242));
        assert!(!postmaster_ready(dir.path(), 4243));
    }

    // Checks that ports handed out concurrently in one process never repeat, by reserving many
    // and comparing the set size.
    #[test]
    fn reserved_ports_are_unique() {
        let ports: Vec<u16> = (0..50).map(|_| reserve_port().unwrap()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len());
        for p in ports {
            release_port(p);
        }
    }

    // Checks the `/proc` parser on our own process: alive, not a zombie, with a parent.
    #[test]
    fn proc_stat_of_self() {
        let me = std::process::id();
        assert!(process_alive(me));
        assert!(proc_stat(me).is_some());
    }
}
