//! Helpers for unit tests: small projects written into temporary directories.

use std::collections::BTreeMap;
use std::path::Path;

use crate::compile::{CompileContext, RelationKind, RelationLookup};
use crate::project::{LoadOptions, Project};

/// Writes `files` (relative path → contents) under a new temp dir.
pub fn write_project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, contents) in files {
        let full = dir.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(full, contents).expect("write");
    }
    dir
}

/// Loads a project from files with default options.
pub fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
    let dir = write_project(files);
    let project = Project::load(dir.path(), &LoadOptions::default()).expect("load");
    (dir, project)
}

/// Loads expecting an error; returns its message.
pub fn load_err(files: &[(&str, &str)]) -> String {
    let dir = write_project(files);
    match Project::load(dir.path(), &LoadOptions::default()) {
        Ok(_) => panic!("load should fail"),
        Err(err) => err.to_string(),
    }
}

/// A fixed set of existing relations.
#[derive(Default)]
pub struct Relations(pub BTreeMap<(String, String), RelationKind>);

impl RelationLookup for Relations {
    fn exists(&self, schema: &str, name: &str) -> Option<RelationKind> {
        self.0.get(&(schema.to_string(), name.to_string())).copied()
    }
}

/// Compiles a node with nothing existing in the database.
pub fn compile(project: &Project, unique_id: &str) -> String {
    project
        .compile(unique_id, &Relations::default(), &CompileContext::default())
        .expect("compile")
        .sql
}

/// A project of the repository's `examples/` folder (the demo jaffle shop).
pub fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}
