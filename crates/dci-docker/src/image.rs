//! Local images for DCI services, built without a registry.
//!
//! [`rootfs_tar`] packs one program and the shared libraries `ldd` reports for
//! it into a root file system tarball; [`build_service_image`] imports it into
//! the engine (`docker import`) under a tag derived from the tarball's hash, so
//! building twice from the same binary is a no-op and a new binary gets a new
//! tag.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::Docker;
use bollard::query_parameters::{CreateImageOptions, ListImagesOptions, RemoveImageOptions};
use futures_util::TryStreamExt;

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// `ldd` could not be run or failed.
    #[error("cannot list the shared libraries of {binary} with ldd: {detail}")]
    Ldd {
        /// The program.
        binary: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A library the program needs is not on this host.
    #[error("{binary} needs {library}, which ldd did not find on this host")]
    MissingLibrary {
        /// The program.
        binary: PathBuf,
        /// The library's name.
        library: String,
    },
    /// A file could not be read or packed.
    #[error("cannot pack {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path inside the image is not absolute.
    #[error("expected an absolute path inside the image, found {0:?}")]
    ImagePath(String),
    /// The engine refused the import.
    #[error("the engine did not import image {tag}: {source}")]
    Import {
        /// The tag being built.
        tag: String,
        /// The engine's error.
        source: bollard::errors::Error,
    },
}

/// What `ldd` output says a program needs: absolute paths of the shared
/// libraries and the dynamic loader, in order; the names of libraries it did
/// not find are errors. Static programs need nothing.
pub fn shared_libraries(ldd_output: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for line in ldd_output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not a dynamic executable") || line.contains("statically linked") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(name.trim().to_owned());
                }
                rest.split_whitespace().next().unwrap_or_default()
            }
            // The loader (`/lib64/ld-linux-x86-64.so.2 (0x…)`) or the vDSO
            // (`linux-vdso.so.1 (0x…)`, which has no file).
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') && !out.iter().any(|p: &PathBuf| p == Path::new(path)) {
            out.push(PathBuf::from(path));
        }
    }
    Ok(out)
}

/// A root file system holding `binary` at `program` (an absolute path inside
/// the image) and every shared library it needs at the path `ldd` gives
/// (symbolic links followed), plus empty `/tmp`, `/etc`, `/proc`, `/sys` and
/// `/dev`. Deterministic: the same inputs give the same bytes.
pub fn rootfs_tar(binary: &Path, program: &str) -> Result<Vec<u8>, ImageError> {
    if !program.starts_with('/') || program.len() < 2 {
        return Err(ImageError::ImagePath(program.to_owned()));
    }
    let ldd = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| ImageError::Ldd { binary: binary.to_path_buf(), detail: e.to_string() })?;
    let text = String::from_utf8_lossy(&ldd.stdout).into_owned() + &String::from_utf8_lossy(&ldd.stderr);
    let is_static = text.contains("not a dynamic executable") || text.contains("statically linked");
    if !ldd.status.success() && !is_static {
        return Err(ImageError::Ldd { binary: binary.to_path_buf(), detail: text.trim().to_owned() });
    }
    let libs = shared_libraries(&text)
        .map_err(|library| ImageError::MissingLibrary { binary: binary.to_path_buf(), library })?;

    let mut files: Vec<(String, PathBuf)> = vec![(program.trim_start_matches('/').to_owned(), binary.to_path_buf())];
    files.extend(libs.into_iter().map(|l| (l.to_string_lossy().trim_start_matches('/').to_owned(), l)));
    files.sort();
    let mut dirs: Vec<String> = ["tmp", "etc", "proc", "sys", "dev"].map(String::from).to_vec();
    for (inside, _) in &files {
        let mut p = Path::new(inside).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(d.to_string_lossy().into_owned());
            p = d.parent();
        }
    }
    dirs.sort();
    dirs.dedup();

    let mut tar = tar::Builder::new(Vec::new());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { path, source }
    };
    for d in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if d == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, format!("{d}/"), std::io::empty()).map_err(io(Path::new(d)))?;
    }
    for (inside, host) in &files {
        // Opening follows symbolic links: the image gets the file itself.
        let file = fs::File::open(host).map_err(io(host))?;
        let len = file.metadata().map_err(io(host))?.len();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(len);
        h.set_mtime(0);
        tar.append_data(&mut h, inside, file).map_err(io(host))?;
    }
    tar.into_inner().map_err(io(binary))
}

/// Imports a service image holding `binary` at `program` into the engine as
/// `<repo>:<hash>` (16 hex digits of the root file system's BLAKE3 hash) and
/// returns that reference. When the tag exists already nothing is imported.
pub async fn build_service_image(
    docker: &Docker,
    binary: &Path,
    program: &str,
    repo: &str,
) -> Result<String, ImageError> {
    let rootfs = rootfs_tar(binary, program)?;
    let tag = hex::encode(&blake3::hash(&rootfs).as_bytes()[..8]);
    let reference = format!("{repo}:{tag}");
    if docker.inspect_image(&reference).await.is_ok() {
        return Ok(reference);
    }
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag),
        changes: vec![format!("ENTRYPOINT [\"{program}\"]")],
        ..Default::default()
    };
    let import = |source| ImageError::Import { tag: reference.clone(), source };
    docker
        .create_image(Some(options), Some(bollard::body_full(rootfs.into())), None)
        .try_collect::<Vec<_>>()
        .await
        .map_err(import)?;
    docker.inspect_image(&reference).await.map_err(import)?;
    remove_older_tags(docker, repo, &reference).await;
    Ok(reference)
}

/// Untags the other images of `repo` (builds from older binaries) so they do
/// not pile up; images still used by a container are refused by the engine
/// and kept.
async fn remove_older_tags(docker: &Docker, repo: &str, keep: &str) {
    let filters = HashMap::from([("reference".to_owned(), vec![repo.to_owned()])]);
    let Ok(images) = docker.list_images(Some(ListImagesOptions { filters: Some(filters), ..Default::default() })).await
    else {
        return;
    };
    for tag in images.iter().flat_map(|i| &i.repo_tags).filter(|t| *t != keep && t.starts_with(&format!("{repo}:"))) {
        let options = RemoveImageOptions { force: false, noprune: false, ..Default::default() };
        if let Err(e) = docker.remove_image(tag, Some(options), None).await {
            tracing::debug!(tag, error = %e, "older service image kept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ldd: &str, expect: Result<Vec<&str>, &str>) {
        let got = shared_libraries(ldd);
        let expect = expect.map(|v| v.into_iter().map(PathBuf::from).collect::<Vec<_>>()).map_err(String::from);
        assert_eq!(got, expect, "ldd output:\n{ldd}");
    }

    #[test]
    fn ldd_output_names_the_files_to_pack() {
        check(
            "\tlinux-vdso.so.1 (0x00007ffc4b9f6000)\n\
             \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0e1c2a0000)\n\
             \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e1c0bf000)\n\
             \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e1c2e0000)\n",
            Ok(vec![
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2",
            ]),
        );
        check("\tnot a dynamic executable\n", Ok(vec![]));
        check("\tstatically linked\n", Ok(vec![]));
        check("\tlibfoo.so.3 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n", Err("libfoo.so.3"));
        check("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n", Ok(vec!["/lib/libc.so.6"]));
    }

    #[test]
    fn rootfs_holds_the_program_and_its_libraries_and_is_deterministic() {
        let me = std::env::current_exe().unwrap();
        let a = rootfs_tar(&me, "/usr/local/bin/svc").unwrap();
        assert_eq!(a, rootfs_tar(&me, "/usr/local/bin/svc").unwrap());
        let names: Vec<String> = tar::Archive::new(a.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"usr/local/bin/svc".to_owned()), "{names:?}");
        assert!(names.contains(&"tmp/".to_owned()), "{names:?}");
        assert!(names.iter().any(|n| n.contains("libc.so")), "a test binary links libc: {names:?}");
        assert!(matches!(rootfs_tar(&me, "relative"), Err(ImageError::ImagePath(_))));
    }
}
