//! The dependency graph of a project: validation (cycles, missing refs), ordering, and
//! dbt's node selection syntax.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::error::{Result, TransformError};
use crate::project::{Project, ResourceType};

/// Parents/children of every model, seed, test, source and exposure.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    parents: BTreeMap<String, BTreeSet<String>>,
    children: BTreeMap<String, BTreeSet<String>>,
    kinds: BTreeMap<String, ResourceType>,
}

impl Graph {
    /// Builds and validates the graph: every ref and source must resolve, no cycles.
    pub fn build(project: &Project) -> Result<Graph> {
        let mut graph = Graph::default();
        for id in project.sources.keys() {
            graph.add(id, ResourceType::Source);
        }
        for (id, node) in &project.nodes {
            graph.add(id, node.resource_type);
        }
        let model_names: BTreeMap<&str, &str> = project
            .nodes
            .values()
            .filter(|n| matches!(n.resource_type, ResourceType::Model | ResourceType::Seed))
            .map(|n| (n.name.as_str(), n.unique_id.as_str()))
            .collect();
        let disabled: BTreeMap<&str, &str> = project
            .disabled
            .values()
            .map(|n| (n.name.as_str(), n.original_file_path.as_str()))
            .collect();
        for node in project.nodes.values() {
            let what = match node.resource_type {
                ResourceType::Test => "test",
                ResourceType::Seed => "seed",
                _ => "model",
            };
            for name in &node.refs {
                if model_names.contains_key(name.as_str()) {
                    continue;
                }
                let reason = match disabled.get(name.as_str()) {
                    Some(path) => format!("which is disabled ({path})"),
                    None => "which was not found".to_string(),
                };
                return Err(TransformError::Graph(format!(
                    "{what} '{}' ({}) depends on '{name}' {reason}",
                    node.name, node.original_file_path
                )));
            }
            for (source, table) in &node.sources {
                let found = project
                    .sources
                    .values()
                    .any(|s| s.source_name == *source && s.name == *table);
                if !found {
                    return Err(TransformError::Graph(format!(
                        "{what} '{}' ({}) depends on source '{source}.{table}' which was not found",
                        node.name, node.original_file_path
                    )));
                }
            }
            for parent in &node.depends_on {
                graph.edge(parent, &node.unique_id);
            }
        }
        for (id, exposure) in &project.exposures {
            graph.add(id, ResourceType::Exposure);
            for parent in &exposure.depends_on {
                graph.edge(parent, id);
            }
        }
        if let Some(cycle) = graph.find_cycle() {
            let names: Vec<String> = cycle.iter().map(|id| project.display_name(id)).collect();
            return Err(TransformError::Graph(format!(
                "dependency cycle: {}",
                names.join(" -> ")
            )));
        }
        Ok(graph)
    }

    fn add(&mut self, id: &str, kind: ResourceType) {
        self.kinds.insert(id.to_string(), kind);
        self.parents.entry(id.to_string()).or_default();
        self.children.entry(id.to_string()).or_default();
    }

    fn edge(&mut self, parent: &str, child: &str) {
        self.parents
            .entry(child.to_string())
            .or_default()
            .insert(parent.to_string());
        self.children
            .entry(parent.to_string())
            .or_default()
            .insert(child.to_string());
    }

    /// A cycle as a path `a, b, ..., a`, if any.
    fn find_cycle(&self) -> Option<Vec<String>> {
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        for start in self.kinds.keys() {
            if state.get(start.as_str()).copied().unwrap_or(0) != 0 {
                continue;
            }
            let mut path: Vec<&str> = vec![start];
            let mut iters: Vec<Vec<&str>> = vec![self.child_list(start)];
            state.insert(start, 1);
            while let Some(next_list) = iters.last_mut() {
                match next_list.pop() {
                    Some(child) => match state.get(child).copied().unwrap_or(0) {
                        0 => {
                            state.insert(child, 1);
                            path.push(child);
                            iters.push(self.child_list(child));
                        }
                        1 => {
                            let from = path.iter().position(|p| *p == child).unwrap_or(0);
                            let mut cycle: Vec<String> =
                                path[from..].iter().map(|s| s.to_string()).collect();
                            cycle.push(child.to_string());
                            return Some(cycle);
                        }
                        _ => {}
                    },
                    None => {
                        iters.pop();
                        if let Some(done) = path.pop() {
                            state.insert(done, 2);
                        }
                    }
                }
            }
        }
        None
    }

    fn child_list(&self, id: &str) -> Vec<&str> {
        let mut list: Vec<&str> = self
            .children
            .get(id)
            .map(|c| c.iter().map(String::as_str).collect())
            .unwrap_or_default();
        list.reverse();
        list
    }

    /// Direct parents of a node.
    pub fn parents(&self, id: &str) -> Vec<String> {
        self.parents
            .get(id)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Direct children of a node.
    pub fn children(&self, id: &str) -> Vec<String> {
        self.children
            .get(id)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// All nodes downstream of `id` (not `id` itself).
    pub fn descendants(&self, id: &str) -> BTreeSet<String> {
        self.walk(id, &self.children, None)
    }

    /// All nodes upstream of `id` (not `id` itself).
    pub fn ancestors(&self, id: &str) -> BTreeSet<String> {
        self.walk(id, &self.parents, None)
    }

    fn walk(
        &self,
        id: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        depth: Option<usize>,
    ) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([(id.to_string(), 0usize)]);
        while let Some((current, level)) = queue.pop_front() {
            if depth.is_some_and(|d| level >= d) {
                continue;
            }
            for next in edges.get(&current).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    queue.push_back((next.clone(), level + 1));
                }
            }
        }
        seen.remove(id);
        seen
    }

    /// Resource type of a graph member.
    pub fn kind(&self, id: &str) -> Option<ResourceType> {
        self.kinds.get(id).copied()
    }

    /// Every member, sorted.
    pub fn all(&self) -> BTreeSet<String> {
        self.kinds.keys().cloned().collect()
    }

    /// Levels of a topological order: each level depends only on earlier ones.
    pub fn order(&self) -> Vec<Vec<String>> {
        let mut remaining: BTreeMap<&str, usize> = self
            .kinds
            .keys()
            .map(|id| (id.as_str(), self.parents.get(id).map_or(0, BTreeSet::len)))
            .collect();
        let mut levels = Vec::new();
        loop {
            let ready: Vec<String> = remaining
                .iter()
                .filter(|(_, n)| **n == 0)
                .map(|(id, _)| id.to_string())
                .collect();
            if ready.is_empty() {
                break;
            }
            for id in &ready {
                remaining.remove(id.as_str());
                for child in self.children.get(id).into_iter().flatten() {
                    if let Some(count) = remaining.get_mut(child.as_str()) {
                        *count -= 1;
                    }
                }
            }
            levels.push(ready);
        }
        levels
    }

    /// The selected nodes in a topological order, stable by id; a test comes right after
    /// the last node it depends on (as `dbt build` runs tests before dependents).
    pub fn execution_order(&self, selected: &BTreeSet<String>) -> Vec<String> {
        let mut pending: BTreeMap<&str, usize> = BTreeMap::new();
        for id in selected {
            // Only selected ancestors constrain the order (transitively through unselected).
            let count = self.selected_parents(id, selected).len();
            pending.insert(id.as_str(), count);
        }
        let mut ready_tests: BTreeSet<String> = BTreeSet::new();
        let mut ready_other: BTreeSet<String> = BTreeSet::new();
        for (id, count) in &pending {
            if *count == 0 {
                self.push_ready(id, &mut ready_tests, &mut ready_other);
            }
        }
        let mut order = Vec::new();
        let mut done: BTreeSet<String> = BTreeSet::new();
        loop {
            let next = match ready_tests.pop_first() {
                Some(test) => test,
                None => match ready_other.pop_first() {
                    Some(other) => other,
                    None => break,
                },
            };
            done.insert(next.clone());
            order.push(next.clone());
            for id in selected {
                if done.contains(id) || ready_tests.contains(id) || ready_other.contains(id) {
                    continue;
                }
                if self
                    .selected_parents(id, selected)
                    .iter()
                    .all(|p| done.contains(p))
                {
                    self.push_ready(id, &mut ready_tests, &mut ready_other);
                }
            }
        }
        order
    }

    fn push_ready(&self, id: &str, tests: &mut BTreeSet<String>, other: &mut BTreeSet<String>) {
        if self.kind(id) == Some(ResourceType::Test) {
            tests.insert(id.to_string());
        } else {
            other.insert(id.to_string());
        }
    }

    /// Nearest selected ancestors of `id` (looking through unselected nodes).
    fn selected_parents(&self, id: &str, selected: &BTreeSet<String>) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = self.parents(id);
        while let Some(parent) = stack.pop() {
            if !seen.insert(parent.clone()) {
                continue;
            }
            if selected.contains(&parent) {
                found.insert(parent);
            } else {
                stack.extend(self.parents(&parent));
            }
        }
        found
    }

    /// dbt's `--select`/`--exclude`: values union, space-separated terms union,
    /// comma-joined terms intersect; graph operators `+`, `N+`, `+N`, `@`; methods
    /// `tag:`, `path:`, `config.<key>:`, `resource_type:`, `source:`, `test_type:`,
    /// `fqn:`, `package:`, `file:`, `exposure:`, `test_name:`. Tests attached to selected
    /// nodes are added (eager indirect selection).
    pub fn select(
        &self,
        project: &Project,
        select: &[String],
        exclude: &[String],
        resource_types: &[ResourceType],
    ) -> Result<BTreeSet<String>> {
        let mut selected = if select.iter().all(|s| s.trim().is_empty()) {
            self.all()
        } else {
            let mut union = BTreeSet::new();
            for value in select {
                union.extend(self.eval_value(project, value)?);
            }
            // Eager indirect selection: tests that touch any selected node.
            let tests: Vec<String> = self
                .kinds
                .iter()
                .filter(|(_, k)| **k == ResourceType::Test)
                .map(|(id, _)| id.clone())
                .collect();
            for test in tests {
                if self.parents(&test).iter().any(|p| union.contains(p)) {
                    union.insert(test);
                }
            }
            union
        };
        let mut excluded = BTreeSet::new();
        for value in exclude {
            excluded.extend(self.eval_value(project, value)?);
        }
        if !excluded.is_empty() {
            // As dbt does: a test goes with any node it reads that is excluded.
            let tests_of_excluded: Vec<String> = selected
                .iter()
                .filter(|id| self.kind(id) == Some(ResourceType::Test))
                .filter(|id| self.parents(id).iter().any(|p| excluded.contains(p)))
                .cloned()
                .collect();
            excluded.extend(tests_of_excluded);
            selected.retain(|id| !excluded.contains(id));
        }
        if !resource_types.is_empty() {
            selected.retain(|id| self.kind(id).is_some_and(|k| resource_types.contains(&k)));
        }
        Ok(selected)
    }

    fn eval_value(&self, project: &Project, value: &str) -> Result<BTreeSet<String>> {
        let mut union = BTreeSet::new();
        for term in value.split_whitespace() {
            let mut intersection: Option<BTreeSet<String>> = None;
            for atom in term.split(',') {
                if atom.is_empty() {
                    return Err(TransformError::Selection(format!(
                        "empty selector in '{term}'"
                    )));
                }
                let matched = self.eval_atom(project, atom)?;
                intersection = Some(match intersection {
                    None => matched,
                    Some(previous) => previous.intersection(&matched).cloned().collect(),
                });
            }
            union.extend(intersection.unwrap_or_default());
        }
        Ok(union)
    }

    fn eval_atom(&self, project: &Project, atom: &str) -> Result<BTreeSet<String>> {
        let parsed = parse_atom(atom)?;
        let base = self.match_method(project, &parsed.method, &parsed.value)?;
        let mut result = base.clone();
        for id in &base {
            if parsed.at {
                let down = self.descendants(id);
                for d in down.iter().chain(std::iter::once(id)) {
                    result.extend(self.ancestors(d));
                }
                result.extend(down);
                continue;
            }
            if let Some(depth) = parsed.parents {
                result.extend(self.walk(id, &self.parents, depth));
            }
            if let Some(depth) = parsed.children {
                result.extend(self.walk(id, &self.children, depth));
            }
        }
        Ok(result)
    }

    fn match_method(
        &self,
        project: &Project,
        method: &str,
        value: &str,
    ) -> Result<BTreeSet<String>> {
        let pattern = glob::Pattern::new(value)
            .map_err(|e| TransformError::Selection(format!("bad pattern '{value}': {e}")))?;
        let mut out = BTreeSet::new();
        let members = self.members(project);
        for member in &members {
            let hit = match method {
                "" => {
                    if value.contains('/') || value.ends_with(".sql") || value.ends_with(".csv") {
                        path_matches(&member.path, value)
                    } else {
                        pattern.matches(&member.name) || fqn_matches(&member.fqn, value)
                    }
                }
                "fqn" => pattern.matches(&member.name) || fqn_matches(&member.fqn, value),
                "tag" => member.tags.iter().any(|t| pattern.matches(t)),
                "path" => path_matches(&member.path, value),
                "file" => {
                    let file = member.path.rsplit('/').next().unwrap_or("");
                    pattern.matches(file) || pattern.matches(file.split('.').next().unwrap_or(""))
                }
                "resource_type" => pattern.matches(member.kind.as_str()),
                "package" => pattern.matches(&member.package),
                "source" => {
                    member.kind == ResourceType::Source && {
                        let (source, table) = member.source.clone().unwrap_or_default();
                        match value.split_once('.') {
                            Some((s, t)) => glob_eq(s, &source) && glob_eq(t, &table),
                            None => pattern.matches(&source),
                        }
                    }
                }
                "exposure" => {
                    member.kind == ResourceType::Exposure && pattern.matches(&member.name)
                }
                "test_type" => {
                    member.kind == ResourceType::Test
                        && match value {
                            "singular" | "data" => member.test_name.as_deref() == Some("singular"),
                            "generic" | "schema" => {
                                member.test_name.as_deref().is_some_and(|n| n != "singular")
                            }
                            _ => {
                                return Err(TransformError::Selection(format!(
                                    "test_type must be generic or singular, got '{value}'"
                                )));
                            }
                        }
                }
                "test_name" => member
                    .test_name
                    .as_deref()
                    .is_some_and(|n| pattern.matches(n)),
                m if m.starts_with("config.") => {
                    let key = &m["config.".len()..];
                    match member.config.get(key) {
                        Some(serde_json::Value::Array(items)) => {
                            items.iter().any(|i| json_matches(i, &pattern))
                        }
                        Some(other) => json_matches(other, &pattern),
                        None => false,
                    }
                }
                other => {
                    return Err(TransformError::Selection(format!(
                        "unknown selector method '{other}'"
                    )));
                }
            };
            if hit {
                out.insert(member.id.clone());
            }
        }
        Ok(out)
    }

    fn members(&self, project: &Project) -> Vec<Member> {
        let mut members = Vec::new();
        for node in project.nodes.values() {
            members.push(Member {
                id: node.unique_id.clone(),
                kind: node.resource_type,
                name: node.name.clone(),
                fqn: node.fqn.clone(),
                path: node.original_file_path.clone(),
                tags: node.tags.clone(),
                package: node.package_name.clone(),
                config: node
                    .config
                    .to_json()
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                source: None,
                test_name: node.test.as_ref().map(|t| t.name.clone()),
            });
        }
        for source in project.sources.values() {
            members.push(Member {
                id: source.unique_id.clone(),
                kind: ResourceType::Source,
                name: source.name.clone(),
                fqn: source.fqn.clone(),
                path: source.original_file_path.clone(),
                tags: source.tags.clone(),
                package: project.name.clone(),
                config: serde_json::Map::new(),
                source: Some((source.source_name.clone(), source.name.clone())),
                test_name: None,
            });
        }
        for exposure in project.exposures.values() {
            members.push(Member {
                id: exposure.unique_id.clone(),
                kind: ResourceType::Exposure,
                name: exposure.name.clone(),
                fqn: exposure.fqn.clone(),
                path: exposure.original_file_path.clone(),
                tags: exposure.tags.clone(),
                package: project.name.clone(),
                config: serde_json::Map::new(),
                source: None,
                test_name: None,
            });
        }
        members
    }
}

struct Member {
    id: String,
    kind: ResourceType,
    name: String,
    fqn: Vec<String>,
    path: String,
    tags: Vec<String>,
    package: String,
    config: serde_json::Map<String, serde_json::Value>,
    source: Option<(String, String)>,
    test_name: Option<String>,
}

fn glob_eq(pattern: &str, text: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(text))
}

fn json_matches(value: &serde_json::Value, pattern: &glob::Pattern) -> bool {
    match value {
        serde_json::Value::String(s) => pattern.matches(s),
        other => pattern.matches(&other.to_string()),
    }
}

/// `path:models/marts` matches files below the folder or the file itself.
fn path_matches(path: &str, selector: &str) -> bool {
    let selector = selector.trim_end_matches('/');
    if selector.contains('*') {
        return glob_eq(selector, path);
    }
    path == selector || path.starts_with(&format!("{selector}/"))
}

/// `marts` / `marts.finance` / `proj.marts` match an fqn prefix, with or without package.
fn fqn_matches(fqn: &[String], selector: &str) -> bool {
    let parts: Vec<&str> = selector.split('.').collect();
    let prefix_of = |candidate: &[String]| {
        parts.len() <= candidate.len()
            && parts
                .iter()
                .zip(candidate)
                .all(|(p, segment)| glob_eq(p, segment))
    };
    prefix_of(fqn) || (fqn.len() > 1 && prefix_of(&fqn[1..]))
}

#[derive(Debug, PartialEq)]
struct Atom {
    at: bool,
    /// Some(None) = all ancestors, Some(Some(n)) = n levels.
    parents: Option<Option<usize>>,
    children: Option<Option<usize>>,
    method: String,
    value: String,
}

fn parse_atom(atom: &str) -> Result<Atom> {
    let bad = || TransformError::Selection(format!("cannot parse selector '{atom}'"));
    let mut rest = atom;
    let mut at = false;
    let mut parents = None;
    if let Some(stripped) = rest.strip_prefix('@') {
        at = true;
        rest = stripped;
    } else if let Some(plus) = rest.find('+') {
        let head = &rest[..plus];
        if head.is_empty() {
            parents = Some(None);
            rest = &rest[1..];
        } else if head.chars().all(|c| c.is_ascii_digit()) {
            parents = Some(Some(head.parse::<usize>().map_err(|_| bad())?));
            rest = &rest[plus + 1..];
        }
    }
    let mut children = None;
    if let Some(plus) = rest.rfind('+') {
        let tail = &rest[plus + 1..];
        if tail.is_empty() {
            children = Some(None);
            rest = &rest[..plus];
        } else if tail.chars().all(|c| c.is_ascii_digit()) {
            children = Some(Some(tail.parse::<usize>().map_err(|_| bad())?));
            rest = &rest[..plus];
        }
    }
    if at && (parents.is_some() || children.is_some()) {
        return Err(TransformError::Selection(format!(
            "'@' cannot be combined with '+' in '{atom}'"
        )));
    }
    let (method, value) = match rest.split_once(':') {
        Some((method, value)) => (method.to_string(), value.to_string()),
        None => (String::new(), rest.to_string()),
    };
    if value.is_empty() || rest.contains('+') {
        return Err(bad());
    }
    Ok(Atom {
        at,
        parents,
        children,
        method,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_operators() {
        let atom = parse_atom("2+tag:nightly+1").expect("atom");
        assert_eq!(atom.parents, Some(Some(2)));
        assert_eq!(atom.children, Some(Some(1)));
        assert_eq!(atom.method, "tag");
        assert_eq!(atom.value, "nightly");
        let at = parse_atom("@orders").expect("atom");
        assert!(at.at);
        assert!(parse_atom("@+orders").is_err());
        assert!(parse_atom("+").is_err());
    }

    #[test]
    fn fqn_and_path_matching() {
        let fqn = vec![
            "shop".to_string(),
            "marts".to_string(),
            "orders".to_string(),
        ];
        assert!(fqn_matches(&fqn, "marts"));
        assert!(fqn_matches(&fqn, "shop.marts"));
        assert!(!fqn_matches(&fqn, "staging"));
        assert!(path_matches("models/marts/orders.sql", "models/marts"));
        assert!(!path_matches("models/martsx/orders.sql", "models/marts"));
    }

    use crate::test_support::*;

    const PROJECT: &str = "name: shop\nversion: '1.0'\nconfig-version: 2\n";

    #[test]
    fn cycle_is_named() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            ("models/a.sql", "select * from {{ ref('b') }}"),
            ("models/b.sql", "select * from {{ ref('a') }}"),
        ]);
        let err = Graph::build(&project).expect_err("cycle").to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
    }

    #[test]
    fn missing_and_disabled_refs_name_the_referring_file() {
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            ("models/marts/a.sql", "select * from {{ ref('ghost') }}"),
        ]);
        let err = Graph::build(&project).expect_err("missing").to_string();
        assert!(
            err.contains("models/marts/a.sql") && err.contains("'ghost'"),
            "{err}"
        );
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            ("models/off.sql", "{{ config(enabled=false) }}select 1"),
            ("models/a.sql", "select * from {{ ref('off') }}"),
        ]);
        let err = Graph::build(&project).expect_err("disabled").to_string();
        assert!(
            err.contains("models/a.sql") && err.contains("disabled"),
            "{err}"
        );
        let (_dir, project) = load(&[
            ("dbt_project.yml", PROJECT),
            ("models/a.sql", "select * from {{ source('raw', 'nope') }}"),
        ]);
        let err = Graph::build(&project).expect_err("source").to_string();
        assert!(
            err.contains("models/a.sql") && err.contains("raw.nope"),
            "{err}"
        );
    }

    fn selection_project() -> (tempfile::TempDir, Project, Graph) {
        let (dir, project) = load(&[
            (
                "dbt_project.yml",
                "name: shop\nversion: '1.0'\nmodels:\n  shop:\n    marts:\n      +materialized: table\n      +tags: [nightly]\n",
            ),
            ("seeds/raw.csv", "id\n1\n"),
            (
                "models/staging/stg.sql",
                "select * from {{ ref('raw') }} union all select * from {{ source('app', 'users') }}",
            ),
            ("models/marts/fct.sql", "select * from {{ ref('stg') }}"),
            ("models/marts/dim.sql", "select * from {{ ref('stg') }}"),
            ("models/report.sql", "select * from {{ ref('fct') }}"),
            ("models/other.sql", "select 1 as id"),
            (
                "models/schema.yml",
                "version: 2\nsources:\n  - name: app\n    tables: [{name: users}]\nmodels:\n  - name: fct\n    columns:\n      - name: id\n        tests: [unique]\n",
            ),
            (
                "tests/check_dim.sql",
                "select * from {{ ref('dim') }} where 1 = 0",
            ),
        ]);
        let graph = Graph::build(&project).expect("graph");
        (dir, project, graph)
    }

    fn names(project: &Project, ids: &BTreeSet<String>) -> Vec<String> {
        ids.iter().map(|id| project.display_name(id)).collect()
    }

    fn sel(
        project: &Project,
        graph: &Graph,
        select: &[&str],
        exclude: &[&str],
        types: &[ResourceType],
    ) -> Vec<String> {
        let select: Vec<String> = select.iter().map(|s| s.to_string()).collect();
        let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        let ids = graph
            .select(project, &select, &exclude, types)
            .expect("select");
        names(project, &ids)
    }

    #[test]
    fn every_selector_form() {
        let (_dir, p, g) = selection_project();
        let models = &[ResourceType::Model];
        assert_eq!(sel(&p, &g, &["fct"], &[], models), vec!["fct"]);
        assert_eq!(
            sel(&p, &g, &["+fct"], &[], &[]),
            vec!["fct", "stg", "raw", "app.users", "unique_fct_id"]
        );
        assert_eq!(sel(&p, &g, &["+fct"], &[], models), vec!["fct", "stg"]);
        assert_eq!(
            sel(&p, &g, &["stg+"], &[], models),
            vec!["dim", "fct", "report", "stg"]
        );
        assert_eq!(
            sel(&p, &g, &["stg+1"], &[], models),
            vec!["dim", "fct", "stg"]
        );
        assert_eq!(
            sel(&p, &g, &["1+report"], &[], models),
            vec!["fct", "report"]
        );
        assert_eq!(
            sel(&p, &g, &["+fct+"], &[], models),
            vec!["fct", "report", "stg"]
        );
        assert_eq!(
            sel(&p, &g, &["@fct"], &[], models),
            vec!["fct", "report", "stg"]
        );
        assert_eq!(
            sel(&p, &g, &["tag:nightly"], &[], models),
            vec!["dim", "fct"]
        );
        assert_eq!(
            sel(&p, &g, &["path:models/marts"], &[], models),
            vec!["dim", "fct"]
        );
        assert_eq!(
            sel(&p, &g, &["models/staging/stg.sql"], &[], models),
            vec!["stg"]
        );
        assert_eq!(sel(&p, &g, &["marts"], &[], models), vec!["dim", "fct"]);
        assert_eq!(sel(&p, &g, &["shop.marts.fct"], &[], models), vec!["fct"]);
        assert_eq!(sel(&p, &g, &["fqn:staging"], &[], models), vec!["stg"]);
        assert_eq!(
            sel(&p, &g, &["config.materialized:table"], &[], models),
            vec!["dim", "fct"]
        );
        assert_eq!(sel(&p, &g, &["resource_type:seed"], &[], &[]), vec!["raw"]);
        assert_eq!(
            sel(&p, &g, &["source:app+"], &[], models),
            vec!["dim", "fct", "report", "stg"]
        );
        assert_eq!(
            sel(&p, &g, &["source:app.users"], &[], &[]),
            vec!["app.users"]
        );
        assert_eq!(
            sel(&p, &g, &["test_type:singular"], &[], &[]),
            vec!["check_dim"]
        );
        assert_eq!(
            sel(&p, &g, &["test_type:generic"], &[], &[]),
            vec!["unique_fct_id"]
        );
        assert_eq!(sel(&p, &g, &["*t"], &[], models), vec!["fct", "report"]);
        assert_eq!(sel(&p, &g, &["fct dim"], &[], models), vec!["dim", "fct"]);
        assert_eq!(
            sel(&p, &g, &["fct", "other"], &[], models),
            vec!["fct", "other"]
        );
        assert_eq!(
            sel(
                &p,
                &g,
                &["tag:nightly,config.materialized:table,+report"],
                &[],
                models
            ),
            vec!["fct"]
        );
        assert_eq!(
            sel(&p, &g, &["stg+"], &["marts"], models),
            vec!["report", "stg"]
        );
        assert_eq!(sel(&p, &g, &[], &[], models).len(), 5);
        // Eager indirect selection brings the tests of selected nodes.
        assert_eq!(
            sel(&p, &g, &["fct"], &[], &[]),
            vec!["fct", "unique_fct_id"]
        );
        assert_eq!(
            sel(&p, &g, &["dim"], &[], &[ResourceType::Test]),
            vec!["check_dim"]
        );
        for bad in ["bogus:x", "@+fct", "a,,b", "test_type:weird"] {
            let err = g.select(&p, &[bad.to_string()], &[], &[]);
            assert!(
                matches!(err, Err(TransformError::Selection(_))),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn tests_run_right_after_their_node() {
        let (_dir, p, g) = selection_project();
        let order: Vec<String> = g
            .execution_order(&g.all())
            .iter()
            .map(|id| p.display_name(id))
            .collect();
        let pos = |name: &str| order.iter().position(|n| n == name).unwrap_or(usize::MAX);
        assert!(pos("raw") < pos("stg") && pos("stg") < pos("fct") && pos("fct") < pos("report"));
        assert_eq!(pos("unique_fct_id"), pos("fct") + 1, "{order:?}");
        assert!(pos("check_dim") == pos("dim") + 1, "{order:?}");
        assert_eq!(g.descendants("model.shop.stg").len(), 5);
        assert_eq!(
            g.parents("model.shop.stg"),
            vec!["seed.shop.raw", "source.shop.app.users"]
        );
        let levels = g.order();
        assert!(levels[0].contains(&"seed.shop.raw".to_string()));
    }
}
