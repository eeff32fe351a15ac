//! The dbt Jinja context on minijinja: macro library, ref/source/config/var, relations, return().

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde_json::Map;

use crate::builtin_macros::BUILTIN_MACROS;
use crate::error::TransformError;
use crate::project::Target;

/// Temp slot in which `return(x)` leaves its value for the macro wrapper to pick up.
const RETURN_TEMP: &str = "__polder_return";
/// Marker detail of the error `return(x)` raises to stop rendering the macro.
const RETURN_MARKER: &str = "__polder_macro_return__";
/// Context key holding the whole render context, so macro calls can pass it on.
const CTX_KEY: &str = "__ctx";
/// Package name of the built-in macros, as in dbt.
pub const BUILTIN_PACKAGE: &str = "dbt";
/// The dbt version this crate imitates (reported by `dbt_version` and in artifacts).
pub const DBT_VERSION: &str = "1.8.0";

/// A `{% macro %}` (or `{% test %}`, renamed `test_<name>`) found in a macro file.
#[derive(Debug, Clone)]
pub struct MacroDef {
    /// Callable name (`test_unique` for `{% test unique %}`).
    pub name: String,
    /// `dbt` for built-ins, the project name otherwise.
    pub package_name: String,
    /// File relative to the project root (`<builtin>` for built-ins).
    pub original_file_path: String,
    /// 1-based line of the `{% macro %}` tag.
    pub line: usize,
    /// The block text as written.
    pub macro_sql: String,
    /// Argument names in order.
    pub arguments: Vec<String>,
    /// Documentation from a `macros:` YAML entry.
    pub description: String,
    /// Name of the minijinja template holding this macro alone.
    pub(crate) template: String,
}

impl MacroDef {
    /// `macro.<package>.<name>`, as dbt names macros.
    pub fn unique_id(&self) -> String {
        format!("macro.{}.{}", self.package_name, self.name)
    }
}

/// One macro block as cut out of a file, before it becomes a template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MacroBlock {
    pub name: String,
    pub arguments: Vec<String>,
    pub line: usize,
    pub original: String,
    /// The block rewritten as a plain `{% macro %}` (test blocks renamed `test_<name>`).
    pub rewritten: String,
}

/// Finds the `{% macro %}` and `{% test %}` blocks of a macro file.
pub(crate) fn split_macro_blocks(source: &str) -> Result<Vec<MacroBlock>, String> {
    let mut blocks = Vec::new();
    let mut pos = 0;
    // (kind, block start, header end, left control, right control, signature)
    let mut open: Option<(String, usize, usize, String, String, String)> = None;
    while let Some(tag) = next_tag(source, pos) {
        pos = tag.end;
        let word = tag.inner.split_whitespace().next().unwrap_or("");
        match word {
            "raw" => {
                // Skip the raw body: tags inside it are text.
                let mut inner_pos = tag.end;
                loop {
                    let Some(inner) = next_tag(source, inner_pos) else {
                        return Err("unclosed raw block".into());
                    };
                    inner_pos = inner.end;
                    if inner.inner.trim() == "endraw" {
                        break;
                    }
                }
                pos = inner_pos;
            }
            "macro" | "test" | "materialization" | "snapshot" if open.is_none() => {
                let signature = tag.inner.trim_start()[word.len()..].to_string();
                open = Some((
                    word.to_string(),
                    tag.start,
                    tag.end,
                    tag.left.clone(),
                    tag.right.clone(),
                    signature,
                ));
            }
            "endmacro" | "endtest" | "endmaterialization" | "endsnapshot" => {
                let Some((kind, start, header_end, left, right, signature)) = open.take() else {
                    return Err(format!("unexpected {word}"));
                };
                if kind == "materialization" || kind == "snapshot" {
                    // Materializations are the runner's business; they are not macros here.
                    continue;
                }
                let original = source[start..tag.end].to_string();
                let name_part = signature.split('(').next().unwrap_or("").trim().to_string();
                if name_part.is_empty() {
                    return Err(format!("{kind} without a name"));
                }
                let arguments = parse_arguments(&signature);
                let line = source[..start].matches('\n').count() + 1;
                let (name, rewritten) = if kind == "test" {
                    let body = &source[header_end..tag.start];
                    let sig_after_name = &signature[signature.find(&name_part).unwrap_or(0)..];
                    let header = format!("{{%{left} macro test_{sig_after_name}{right}%}}");
                    let end = format!("{{%{} endmacro {}%}}", tag.left, tag.right);
                    (format!("test_{name_part}"), format!("{header}{body}{end}"))
                } else {
                    (name_part, original.clone())
                };
                blocks.push(MacroBlock {
                    name,
                    arguments,
                    line,
                    original,
                    rewritten,
                });
            }
            _ => {}
        }
    }
    if let Some((kind, start, ..)) = open {
        let line = source[..start].matches('\n').count() + 1;
        return Err(format!(
            "{kind} block opened on line {line} is never closed"
        ));
    }
    Ok(blocks)
}

struct Tag {
    start: usize,
    end: usize,
    inner: String,
    left: String,
    right: String,
}

/// The next `{% ... %}` tag at or after `from`, skipping `{# ... #}` comments.
fn next_tag(source: &str, from: usize) -> Option<Tag> {
    let mut pos = from;
    loop {
        let rest = source.get(pos..)?;
        let offset = rest.find('{')?;
        let start = pos + offset;
        let after = &source[start..];
        if after.starts_with("{#") {
            let close = after.find("#}")?;
            pos = start + close + 2;
            continue;
        }
        if !after.starts_with("{%") {
            pos = start + 1;
            continue;
        }
        let close = after.find("%}")?;
        let mut inner = &after[2..close];
        let mut left = String::new();
        let mut right = String::new();
        if let Some(stripped) = inner.strip_prefix(['-', '+']) {
            left = inner[..1].to_string();
            inner = stripped;
        }
        if let Some(stripped) = inner.strip_suffix(['-', '+']) {
            right = inner[inner.len() - 1..].to_string();
            inner = stripped;
        }
        return Some(Tag {
            start,
            end: start + close + 2,
            inner: inner.to_string(),
            left,
            right,
        });
    }
}

/// Argument names of a macro signature `name(a, b=1, c='x,y')`.
fn parse_arguments(signature: &str) -> Vec<String> {
    let Some(open) = signature.find('(') else {
        return Vec::new();
    };
    let Some(close) = signature.rfind(')') else {
        return Vec::new();
    };
    if close <= open {
        return Vec::new();
    }
    let mut arguments = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut current = String::new();
    for ch in signature[open + 1..close].chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(ch),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                arguments.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    arguments.push(current);
    arguments
        .iter()
        .map(|a| a.split('=').next().unwrap_or("").trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// A relation as seen from Jinja: renders as `schema.identifier`.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub database: String,
    pub schema: String,
    pub identifier: String,
    /// Rendered text that replaces `schema.identifier` (ephemeral CTE name, test subquery).
    pub rendered: Option<String>,
    /// `include(schema=false)` drops the schema from the rendering.
    pub include_schema: bool,
    /// `table`, `view`, `cte` or empty when unknown.
    pub kind: String,
}

impl Relation {
    pub fn new(database: &str, schema: &str, identifier: &str) -> Relation {
        Relation {
            database: database.to_string(),
            schema: schema.to_string(),
            identifier: identifier.to_string(),
            rendered: None,
            include_schema: true,
            kind: String::new(),
        }
    }

    /// The SQL text of the relation.
    pub fn render_sql(&self) -> String {
        if let Some(text) = &self.rendered {
            return text.clone();
        }
        if self.include_schema && !self.schema.is_empty() {
            format!(
                "{}.{}",
                quote_identifier(&self.schema),
                quote_identifier(&self.identifier)
            )
        } else {
            quote_identifier(&self.identifier)
        }
    }
}

/// Double-quotes an identifier unless it is a plain lowercase SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    let mut chars = name.chars();
    let plain = match chars.next() {
        Some(first) if first.is_ascii_lowercase() || first == '_' => {
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        }
        _ => false,
    };
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl Object for Relation {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "database" => Value::from(self.database.clone()),
            "schema" => Value::from(self.schema.clone()),
            "identifier" | "name" | "table" => Value::from(self.identifier.clone()),
            "is_table" => Value::from(self.kind == "table"),
            "is_view" => Value::from(self.kind == "view"),
            "is_cte" => Value::from(self.kind == "cte"),
            "type" => {
                if self.kind.is_empty() {
                    Value::from(())
                } else {
                    Value::from(self.kind.clone())
                }
            }
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "include" | "quote" => {
                let (_, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
                let mut relation = (**self).clone();
                if method == "include"
                    && let Some(schema) = kwargs.get::<Option<bool>>("schema")?
                {
                    relation.include_schema = schema;
                }
                // database and identifier inclusion/quoting: catalog is implicit, keep as is.
                let _ = kwargs.get::<Option<Value>>("database")?;
                let _ = kwargs.get::<Option<Value>>("identifier")?;
                Ok(Value::from_object(relation))
            }
            "render" => Ok(Value::from(self.render_sql())),
            "incorporate" => {
                let (_, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
                let mut relation = (**self).clone();
                if let Some(kind) = kwargs.get::<Option<String>>("type")? {
                    relation.kind = kind;
                }
                let _ = kwargs.get::<Option<Value>>("path")?;
                Ok(Value::from_object(relation))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("relation has no method {method}"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_sql())
    }
}

/// A list that `.append()`/`.extend()` can change: dbt code builds lists with
/// `{% set xs = [] %}{% do xs.append(x) %}`, which immutable minijinja lists cannot do.
/// `{% set name = [] %}` is rewritten to create one (see [`mutable_literals`]).
#[derive(Debug, Default)]
pub(crate) struct MutableList {
    items: Mutex<Vec<Value>>,
}

impl MutableList {
    fn snapshot(&self) -> Vec<Value> {
        match self.items.lock() {
            Ok(items) => items.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn change<R>(&self, f: impl FnOnce(&mut Vec<Value>) -> R) -> R {
        match self.items.lock() {
            Ok(mut items) => f(&mut items),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl Object for MutableList {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.snapshot();
        let index = i64::try_from(key.clone()).ok()?;
        let index = if index < 0 {
            items.len() as i64 + index
        } else {
            index
        };
        items.get(usize::try_from(index).ok()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.snapshot())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "append" => {
                let (item,): (Value,) = minijinja::value::from_args(args)?;
                self.change(|items| items.push(item));
                Ok(Value::from(()))
            }
            "extend" => {
                let (more,): (Value,) = minijinja::value::from_args(args)?;
                let more: Vec<Value> = more.try_iter()?.collect();
                self.change(|items| items.extend(more));
                Ok(Value::from(()))
            }
            "insert" => {
                let (index, item): (usize, Value) = minijinja::value::from_args(args)?;
                self.change(|items| items.insert(index.min(items.len()), item));
                Ok(Value::from(()))
            }
            "pop" => {
                let (index,): (Option<i64>,) = minijinja::value::from_args(args)?;
                self.change(|items| {
                    let len = items.len() as i64;
                    let at = index
                        .map(|i| if i < 0 { len + i } else { i })
                        .unwrap_or(len - 1);
                    if at < 0 || at >= len {
                        Err(Error::new(
                            ErrorKind::InvalidOperation,
                            "pop index out of range",
                        ))
                    } else {
                        Ok(items.remove(at as usize))
                    }
                })
            }
            "remove" => {
                let (item,): (Value,) = minijinja::value::from_args(args)?;
                self.change(|items| {
                    if let Some(at) = items.iter().position(|x| *x == item) {
                        items.remove(at);
                    }
                });
                Ok(Value::from(()))
            }
            "index" => {
                let (item,): (Value,) = minijinja::value::from_args(args)?;
                self.snapshot()
                    .iter()
                    .position(|x| *x == item)
                    .map(Value::from)
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "item not in list"))
            }
            "count" => {
                let (item,): (Value,) = minijinja::value::from_args(args)?;
                Ok(Value::from(
                    self.snapshot().iter().filter(|x| **x == item).count(),
                ))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// A dict that `.update()`/`.pop()`/`.setdefault()` can change (`{% set d = {} %}`).
#[derive(Debug, Default)]
pub(crate) struct MutableDict {
    entries: Mutex<Vec<(Value, Value)>>,
}

impl MutableDict {
    fn change<R>(&self, f: impl FnOnce(&mut Vec<(Value, Value)>) -> R) -> R {
        match self.entries.lock() {
            Ok(mut entries) => f(&mut entries),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn set(entries: &mut Vec<(Value, Value)>, key: Value, value: Value) {
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key, value)),
        }
    }
}

impl Object for MutableDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.change(|entries| {
            entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.change(|entries| entries.iter().map(|(k, _)| k.clone()).collect()))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "update" => {
                let (positional, kwargs): (Option<Value>, Kwargs) =
                    minijinja::value::from_args(args)?;
                let mut pairs = Vec::new();
                if let Some(other) = positional {
                    for key in other.try_iter()? {
                        let value = other.get_item(&key)?;
                        pairs.push((key, value));
                    }
                }
                for key in kwargs.args() {
                    pairs.push((Value::from(key), kwargs.get::<Value>(key)?));
                }
                self.change(|entries| {
                    for (k, v) in pairs {
                        MutableDict::set(entries, k, v);
                    }
                });
                Ok(Value::from(()))
            }
            "pop" => {
                let (key, default): (Value, Option<Value>) = minijinja::value::from_args(args)?;
                let removed = self.change(|entries| {
                    entries
                        .iter()
                        .position(|(k, _)| *k == key)
                        .map(|at| entries.remove(at).1)
                });
                Ok(removed.or(default).unwrap_or(Value::from(())))
            }
            "setdefault" => {
                let (key, default): (Value, Option<Value>) = minijinja::value::from_args(args)?;
                Ok(
                    self.change(|entries| match entries.iter().find(|(k, _)| *k == key) {
                        Some((_, v)) => v.clone(),
                        None => {
                            let value = default.unwrap_or(Value::from(()));
                            entries.push((key, value.clone()));
                            value
                        }
                    }),
                )
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// Rewrites `{% set name = [] %}` / `{% set name = {} %}` to mutable containers, on the same
/// line so error line numbers stay right.
pub(crate) fn mutable_literals(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut pos = 0;
    while let Some(tag) = next_tag(source, pos) {
        let inner = tag.inner.trim();
        let replacement = inner.strip_prefix("set ").and_then(|rest| {
            let (target, value) = rest.split_once('=')?;
            let function = match value.trim() {
                "[]" | "[ ]" => "__polder_list()",
                "{}" | "{ }" => "__polder_dict()",
                _ => return None,
            };
            let target = target.trim();
            target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                .then(|| format!("{{%{} set {target} = {function} {}%}}", tag.left, tag.right))
        });
        out.push_str(&source[pos..tag.start]);
        match replacement {
            Some(text) => out.push_str(&text),
            None => out.push_str(&source[tag.start..tag.end]),
        }
        pos = tag.end;
    }
    out.push_str(&source[pos..]);
    out
}

/// Calls a project or built-in macro in a fresh state of its own template, passing the
/// caller's context along, and turns `return(x)` into the call's value.
#[derive(Debug)]
pub(crate) struct MacroFn {
    template: String,
    name: String,
}

impl Object for MacroFn {
    fn call(self: &Arc<Self>, state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let base = state.lookup(CTX_KEY).unwrap_or_else(|| Value::from(()));
        let env = state.env();
        let template = env.get_template(&self.template)?;
        let full = if base.kind() == ValueKind::Map {
            minijinja::context! { __ctx => base.clone(), ..base }
        } else {
            Value::from(())
        };
        let mut captured = template.render_captured(full)?;
        captured.with_state_mut(|macro_state| {
            let outcome = macro_state
                .lookup(&self.name)
                .ok_or_else(|| Error::new(ErrorKind::UnknownFunction, "macro not found"))
                .and_then(|f| f.call(macro_state, args));
            match outcome {
                Ok(value) => Ok(value),
                Err(err) => match macro_state.get_temp(RETURN_TEMP) {
                    Some(value) if err.detail() == Some(RETURN_MARKER) => Ok(value),
                    _ => Err(err),
                },
            }
        })
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<macro {}>", self.name)
    }
}

/// A namespace of macros (`dbt.`, `<project>.`): attributes and method calls both work.
#[derive(Debug)]
pub(crate) struct MacroNamespace {
    members: BTreeMap<String, Value>,
}

impl Object for MacroNamespace {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.members.get(key.as_str()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.members
                .keys()
                .map(|k| Value::from(k.clone()))
                .collect(),
        )
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match self.members.get(method) {
            Some(function) => function.call(state, args),
            None => Err(Error::new(
                ErrorKind::UnknownFunction,
                format!("macro {method} not found in namespace"),
            )),
        }
    }
}

/// Which macro names exist, per package, for `adapter.dispatch`.
#[derive(Debug, Default)]
pub(crate) struct MacroIndex {
    /// (package, name) → template.
    by_package: BTreeMap<(String, String), String>,
    project_name: String,
}

impl MacroIndex {
    fn value(&self, package: &str, name: &str) -> Option<Value> {
        self.by_package
            .get(&(package.to_string(), name.to_string()))
            .map(|template| {
                Value::from_object(MacroFn {
                    template: template.clone(),
                    name: name.to_string(),
                })
            })
    }

    /// dbt's dispatch: in the root project then the named package (built-ins for `dbt`),
    /// try `polder__name` then `default__name`.
    fn dispatch(&self, name: &str, namespace: Option<&str>) -> Option<Value> {
        let mut packages = vec![self.project_name.clone()];
        match namespace {
            Some(ns) if ns != self.project_name => packages.push(ns.to_string()),
            _ => {}
        }
        if !packages.iter().any(|p| p == BUILTIN_PACKAGE) {
            packages.push(BUILTIN_PACKAGE.to_string());
        }
        for package in &packages {
            for prefix in ["polder", "default"] {
                if let Some(found) = self.value(package, &format!("{prefix}__{name}")) {
                    return Some(found);
                }
            }
        }
        None
    }
}

/// The `adapter` object: dispatch, quoting, type.
#[derive(Debug)]
struct Adapter {
    index: Arc<MacroIndex>,
}

impl Object for Adapter {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "type" => Some(Value::from("polder")),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "dispatch" => {
                let (name, namespace, kwargs): (String, Option<String>, Kwargs) =
                    minijinja::value::from_args(args)?;
                let namespace = namespace.or(kwargs.get::<Option<String>>("macro_namespace")?);
                let _ = kwargs.get::<Option<Value>>("packages")?;
                self.index.dispatch(&name, namespace.as_deref()).ok_or_else(|| {
                    Error::new(
                        ErrorKind::UnknownFunction,
                        format!(
                            "no implementation of macro '{name}' for adapter polder (tried polder__{name}, default__{name})"
                        ),
                    )
                })
            }
            "quote" => {
                let (text,): (String,) = minijinja::value::from_args(args)?;
                Ok(Value::from(format!("\"{}\"", text.replace('"', "\"\""))))
            }
            "type" => Ok(Value::from("polder")),
            "get_relation" | "get_columns_in_relation" | "list_relations_without_caching" => {
                // Database access belongs to the runner; at compile time nothing is known.
                Ok(Value::from(()))
            }
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("adapter.{method} is not supported"),
            )),
        }
    }
}

/// What a render learned: refs, sources, config() kwargs, logs, ephemeral models used.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorded {
    pub refs: Vec<(Option<String>, String)>,
    pub sources: Vec<(String, String)>,
    pub config: Map<String, serde_json::Value>,
    pub logs: Vec<String>,
    /// Unique ids of ephemeral models referenced (compile mode).
    pub ephemerals: Vec<String>,
}

/// Shared between all objects of one render (and the macros it calls).
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    inner: Mutex<Recorded>,
}

impl Recorder {
    fn with<R>(&self, f: impl FnOnce(&mut Recorded) -> R) -> R {
        let mut guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Remembers that the render uses an ephemeral model (its CTE must be injected).
    pub fn note_ephemeral(&self, unique_id: &str) {
        self.with(|r| {
            if !r.ephemerals.iter().any(|e| e == unique_id) {
                r.ephemerals.push(unique_id.to_string());
            }
        });
    }

    pub fn take(&self) -> Recorded {
        self.with(std::mem::take)
    }
}

/// Where `ref`/`source` point at compile time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Resolver {
    /// Model or seed name → (unique id, relation, is ephemeral).
    pub refs: BTreeMap<String, (String, Relation, bool)>,
    /// (source, table) → (unique id, relation).
    pub sources: BTreeMap<(String, String), (String, Relation)>,
    /// Names of disabled models, for a clearer error.
    pub disabled: BTreeSet<String>,
}

/// Parse renders record calls and return placeholders; compile renders resolve them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Parse,
    Compile,
}

#[derive(Debug)]
struct RefFn {
    mode: Mode,
    recorder: Arc<Recorder>,
    resolver: Arc<Resolver>,
    target: Arc<Target>,
}

impl Object for RefFn {
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
        // `v=`/`version=` select a model version; versions are not modelled, so ignore.
        let _ = kwargs.get::<Option<Value>>("v")?;
        let _ = kwargs.get::<Option<Value>>("version")?;
        let names: Vec<String> = positional
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "ref() takes names"))?;
        let (package, name) = match names.as_slice() {
            [name] => (None, name.clone()),
            [package, name] => (Some(package.clone()), name.clone()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "ref() takes one or two names",
                ));
            }
        };
        match self.mode {
            Mode::Parse => {
                self.recorder.with(|r| {
                    if !r.refs.iter().any(|(p, n)| *n == name && *p == package) {
                        r.refs.push((package.clone(), name.clone()));
                    }
                });
                Ok(Value::from_object(Relation::new(
                    &self.target.database,
                    &self.target.schema,
                    &name,
                )))
            }
            Mode::Compile => match self.resolver.refs.get(&name) {
                Some((unique_id, relation, ephemeral)) => {
                    if *ephemeral {
                        self.recorder.with(|r| {
                            if !r.ephemerals.contains(unique_id) {
                                r.ephemerals.push(unique_id.clone());
                            }
                        });
                    }
                    Ok(Value::from_object(relation.clone()))
                }
                None if self.resolver.disabled.contains(&name) => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("ref('{name}') points to a disabled model"),
                )),
                None => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("ref('{name}') was not found"),
                )),
            },
        }
    }
}

#[derive(Debug)]
struct SourceFn {
    mode: Mode,
    recorder: Arc<Recorder>,
    resolver: Arc<Resolver>,
    target: Arc<Target>,
}

impl Object for SourceFn {
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (source, table): (String, String) = minijinja::value::from_args(args)?;
        match self.mode {
            Mode::Parse => {
                self.recorder.with(|r| {
                    let pair = (source.clone(), table.clone());
                    if !r.sources.contains(&pair) {
                        r.sources.push(pair);
                    }
                });
                Ok(Value::from_object(Relation::new(
                    &self.target.database,
                    &source,
                    &table,
                )))
            }
            Mode::Compile => match self.resolver.sources.get(&(source.clone(), table.clone())) {
                Some((_, relation)) => Ok(Value::from_object(relation.clone())),
                None => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("source('{source}', '{table}') was not found"),
                )),
            },
        }
    }
}

/// `config(...)`, `config.get(k, default)`, `config.require(k)`.
#[derive(Debug)]
struct ConfigFn {
    mode: Mode,
    recorder: Arc<Recorder>,
    config: Arc<Map<String, serde_json::Value>>,
}

impl ConfigFn {
    fn lookup(&self, key: &str) -> Option<serde_json::Value> {
        let wanted = normalize_config_key(key);
        let recorded = self.recorder.with(|r| r.config.get(&wanted).cloned());
        recorded.or_else(|| self.config.get(&wanted).cloned())
    }
}

impl Object for ConfigFn {
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        if self.mode == Mode::Parse {
            let (positional, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
            let mut collected = Map::new();
            for value in positional {
                if let serde_json::Value::Object(map) = to_json(value)? {
                    collected.extend(map);
                }
            }
            for key in kwargs.args() {
                let value: Value = kwargs.get(key)?;
                collected.insert(normalize_config_key(key), to_json(&value)?);
            }
            self.recorder.with(|r| {
                for (key, value) in collected {
                    crate::project::merge_config_value(&mut r.config, &key, value);
                }
            });
        }
        Ok(Value::from(""))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "get" => {
                let (key, default, kwargs): (String, Option<Value>, Kwargs) =
                    minijinja::value::from_args(args)?;
                let default = default
                    .or(kwargs.get::<Option<Value>>("default")?)
                    .unwrap_or(Value::from(()));
                Ok(match self.lookup(&key) {
                    Some(serde_json::Value::Null) | None => default,
                    Some(value) => to_value(&value),
                })
            }
            "require" => {
                let (key,): (String,) = minijinja::value::from_args(args)?;
                match self.lookup(&key) {
                    Some(value) if !value.is_null() => Ok(to_value(&value)),
                    _ if self.mode == Mode::Parse => Ok(Value::from(())),
                    _ => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("missing config: '{key}' is required"),
                    )),
                }
            }
            "set" | "meta_get" => Ok(Value::from(())),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("config has no method {method}"),
            )),
        }
    }
}

/// dbt writes hooks as `pre-hook`; `config(pre_hook=...)` uses the Python spelling.
pub(crate) fn normalize_config_key(key: &str) -> String {
    let key = key.strip_prefix('+').unwrap_or(key);
    match key {
        "pre_hook" => "pre-hook".to_string(),
        "post_hook" => "post-hook".to_string(),
        other => other.to_string(),
    }
}

/// Any serializable value → minijinja value.
pub(crate) fn to_value<T: serde::Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// minijinja value → JSON (relations become their SQL text).
pub(crate) fn to_json(value: &Value) -> Result<serde_json::Value, Error> {
    if let Some(relation) = value.downcast_object_ref::<Relation>() {
        return Ok(serde_json::Value::String(relation.render_sql()));
    }
    serde_json::to_value(value).map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))
}

/// `var('x', default)`.
#[derive(Debug)]
struct VarFn {
    vars: Arc<Map<String, serde_json::Value>>,
}

impl Object for VarFn {
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (name, default): (String, Option<Value>) = minijinja::value::from_args(args)?;
        match (self.vars.get(&name), default) {
            (Some(value), _) => Ok(to_value(value)),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("Required var '{name}' not found in config"),
            )),
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "has_var" => {
                let (name,): (String,) = minijinja::value::from_args(args)?;
                Ok(Value::from(self.vars.contains_key(&name)))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// A datetime with Python's `strftime`/`isoformat` and `str()` rendering.
#[derive(Debug, Clone)]
pub(crate) struct PyDateTime(pub DateTime<Utc>);

impl Object for PyDateTime {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        use chrono::{Datelike, Timelike};
        let dt = &self.0;
        Some(match key.as_str()? {
            "year" => Value::from(dt.year()),
            "month" => Value::from(dt.month()),
            "day" => Value::from(dt.day()),
            "hour" => Value::from(dt.hour()),
            "minute" => Value::from(dt.minute()),
            "second" => Value::from(dt.second()),
            "microsecond" => Value::from(dt.timestamp_subsec_micros()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => {
                let (format,): (String,) = minijinja::value::from_args(args)?;
                let items: Vec<chrono::format::Item> =
                    chrono::format::StrftimeItems::new(&format).collect();
                if items.contains(&chrono::format::Item::Error) {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("bad strftime format {format:?}"),
                    ));
                }
                Ok(Value::from(
                    self.0.format_with_items(items.into_iter()).to_string(),
                ))
            }
            "isoformat" => Ok(Value::from(
                self.0.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
            )),
            "timestamp" => Ok(Value::from(self.0.timestamp_micros() as f64 / 1e6)),
            "date" => Ok(Value::from(self.0.format("%Y-%m-%d").to_string())),
            "replace" | "astimezone" => Ok(Value::from_object((**self).clone())),
            _ => Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("datetime has no method {method}"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.6f+00:00"))
    }
}

/// `exceptions.raise_compiler_error` / `exceptions.warn`.
#[derive(Debug)]
struct Exceptions {
    recorder: Arc<Recorder>,
}

impl Object for Exceptions {
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let message = args.first().map(|v| v.to_string()).unwrap_or_default();
        match method {
            "warn" => {
                self.recorder
                    .with(|r| r.logs.push(format!("warning: {message}")));
                Ok(Value::from(""))
            }
            "raise_not_implemented" => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("not implemented: {message}"),
            )),
            _ => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("compilation error: {message}"),
            )),
        }
    }
}

/// `log(msg, info=false)` and `print(msg)`: collected with the compile result.
#[derive(Debug)]
struct LogFn {
    recorder: Arc<Recorder>,
}

impl Object for LogFn {
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (positional, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
        let _ = kwargs.get::<Option<Value>>("info")?;
        let message = positional
            .first()
            .map(|v| v.to_string())
            .unwrap_or_default();
        self.recorder.with(|r| r.logs.push(message));
        Ok(Value::from(""))
    }
}

/// `run_query(sql)` backed by the runner's engine; returns an agate-like table.
struct RunQuery {
    runner: Arc<dyn crate::compile::QueryRunner>,
}

impl fmt::Debug for RunQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<run_query>")
    }
}

impl Object for RunQuery {
    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
        let (sql,): (String,) = minijinja::value::from_args(args)?;
        let result = self.runner.query(&sql).map_err(|message| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("run_query failed: {message}"),
            )
        })?;
        Ok(Value::from_object(QueryTable::new(result)))
    }
}

/// The subset of agate's Table dbt code uses: `.rows`, `.columns`, `.column_names`.
#[derive(Debug)]
struct QueryTable {
    column_names: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl QueryTable {
    fn new(result: crate::compile::QueryResult) -> QueryTable {
        let rows = result
            .rows
            .iter()
            .map(|row| row.iter().map(to_value).collect())
            .collect();
        QueryTable {
            column_names: result.columns,
            rows,
        }
    }

    fn row(&self, index: usize) -> Option<Value> {
        let values = self.rows.get(index)?.clone();
        Some(Value::from_object(QueryRow {
            names: self.column_names.clone(),
            values,
        }))
    }

    fn column(&self, index: usize) -> Option<Value> {
        let name = self.column_names.get(index)?.clone();
        let values = self
            .rows
            .iter()
            .map(|row| row.get(index).cloned().unwrap_or(Value::from(())))
            .collect();
        Some(Value::from_object(QueryColumn { name, values }))
    }
}

impl Object for QueryTable {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "rows" => {
                let rows: Vec<Value> = (0..self.rows.len()).filter_map(|i| self.row(i)).collect();
                Some(Value::from(rows))
            }
            "columns" => {
                let mut by_position = Vec::new();
                let mut by_name = BTreeMap::new();
                for (i, name) in self.column_names.iter().enumerate() {
                    if let Some(column) = self.column(i) {
                        by_position.push(column.clone());
                        by_name.insert(name.clone(), column);
                    }
                }
                Some(Value::from_object(QueryColumns {
                    by_position,
                    by_name,
                }))
            }
            "column_names" => Some(Value::from(self.column_names.clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "print_table" => Ok(Value::from("")),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[derive(Debug)]
struct QueryColumns {
    by_position: Vec<Value>,
    by_name: BTreeMap<String, Value>,
}

impl Object for QueryColumns {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str() {
            Some(name) => self.by_name.get(name).cloned(),
            None => self
                .by_position
                .get(usize::try_from(key.clone()).ok()?)
                .cloned(),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.by_position.clone())
    }
}

#[derive(Debug)]
struct QueryColumn {
    name: String,
    values: Vec<Value>,
}

impl Object for QueryColumn {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" => Some(Value::from(self.name.clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "values" => Ok(Value::from(self.values.clone())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[derive(Debug)]
struct QueryRow {
    names: Vec<String>,
    values: Vec<Value>,
}

impl Object for QueryRow {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let index = match key.as_str() {
            Some(name) => self.names.iter().position(|n| n == name)?,
            None => usize::try_from(key.clone()).ok()?,
        };
        self.values.get(index).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.values.clone())
    }
}

/// Everything a render needs besides the template.
pub(crate) struct RenderSpec {
    pub mode: Mode,
    pub recorder: Arc<Recorder>,
    pub resolver: Arc<Resolver>,
    pub vars: Arc<Map<String, serde_json::Value>>,
    pub target: Arc<Target>,
    pub this: Relation,
    pub config: Arc<Map<String, serde_json::Value>>,
    pub model: serde_json::Value,
    pub is_incremental: bool,
    pub run_started_at: DateTime<Utc>,
    pub invocation_id: String,
    pub full_refresh: bool,
    pub query_runner: Option<Arc<dyn crate::compile::QueryRunner>>,
    pub extra: Vec<(String, Value)>,
}

/// One minijinja environment per project, holding every macro as its own template.
pub struct JinjaEnv {
    env: Environment<'static>,
    macros: Vec<MacroDef>,
    index: Arc<MacroIndex>,
    /// template name → (file relative to root, source) for error reports.
    files: BTreeMap<String, (String, String)>,
}

impl fmt::Debug for JinjaEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JinjaEnv")
            .field("macros", &self.macros.len())
            .finish()
    }
}

impl JinjaEnv {
    /// Builds the environment: built-in macros, then project macro files
    /// `(relative path, source)`; a project macro shadows a built-in of the same name.
    pub(crate) fn new(
        project_name: &str,
        macro_files: &[(String, String)],
    ) -> Result<JinjaEnv, TransformError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_recursion_limit(500);
        env.set_unknown_method_callback(python_methods);
        register_globals(&mut env);

        let mut macros = Vec::new();
        let mut files = BTreeMap::new();
        let mut index = MacroIndex {
            project_name: project_name.to_string(),
            ..MacroIndex::default()
        };
        let builtin = [("<builtin>/dbt.sql".to_string(), BUILTIN_MACROS.to_string())];
        let all_files = builtin
            .iter()
            .map(|f| (BUILTIN_PACKAGE, f))
            .chain(macro_files.iter().map(|f| (project_name, f)));
        for (package, (path, source)) in all_files {
            let blocks = split_macro_blocks(source).map_err(|message| TransformError::Jinja {
                path: PathBuf::from(path),
                line: None,
                message,
                text: String::new(),
            })?;
            for block in blocks {
                let template = format!("{package}:{path}#{}", block.name);
                // Pad with newlines so minijinja's line numbers are the file's.
                let text = format!(
                    "{}{}",
                    "\n".repeat(block.line - 1),
                    mutable_literals(&block.rewritten)
                );
                env.add_template_owned(template.clone(), text)
                    .map_err(|err| jinja_error_at(&err, path, source))?;
                files.insert(template.clone(), (path.clone(), source.clone()));
                index
                    .by_package
                    .insert((package.to_string(), block.name.clone()), template.clone());
                macros.push(MacroDef {
                    name: block.name,
                    package_name: package.to_string(),
                    original_file_path: path.clone(),
                    line: block.line,
                    macro_sql: block.original,
                    arguments: block.arguments,
                    description: String::new(),
                    template,
                });
            }
        }
        let index = Arc::new(index);

        // Bare names: built-ins first, project macros override them.
        let mut builtin_ns = BTreeMap::new();
        let mut project_ns = BTreeMap::new();
        for def in &macros {
            let function = Value::from_object(MacroFn {
                template: def.template.clone(),
                name: def.name.clone(),
            });
            if def.package_name == BUILTIN_PACKAGE {
                builtin_ns.insert(def.name.clone(), function.clone());
            } else {
                project_ns.insert(def.name.clone(), function.clone());
            }
            env.add_global(def.name.clone(), function);
        }
        env.add_global(
            BUILTIN_PACKAGE,
            Value::from_object(MacroNamespace {
                members: builtin_ns,
            }),
        );
        env.add_global(
            project_name.to_string(),
            Value::from_object(MacroNamespace {
                members: project_ns,
            }),
        );
        env.add_global(
            "adapter",
            Value::from_object(Adapter {
                index: index.clone(),
            }),
        );
        Ok(JinjaEnv {
            env,
            macros,
            index,
            files,
        })
    }

    /// All macros, built-in ones included.
    pub fn macros(&self) -> &[MacroDef] {
        &self.macros
    }

    /// Whether the project (not the built-ins) defines a macro of this name.
    pub(crate) fn has_project_macro(&self, name: &str) -> bool {
        self.index
            .by_package
            .contains_key(&(self.index.project_name.clone(), name.to_string()))
    }

    pub(crate) fn has_macro(&self, name: &str) -> bool {
        self.index
            .by_package
            .keys()
            .any(|(_, macro_name)| macro_name == name)
    }

    /// Publishes the project graph as dbt's `graph` context variable.
    pub(crate) fn set_graph(&mut self, graph: serde_json::Value) {
        self.env.add_global("graph", to_value(graph));
    }

    /// Registers a model/test file as a template named by its path.
    pub(crate) fn add_file(&mut self, path: &str, source: &str) -> Result<(), TransformError> {
        self.env
            .add_template_owned(path.to_string(), mutable_literals(source))
            .map_err(|err| jinja_error_at(&err, path, source))?;
        self.files
            .insert(path.to_string(), (path.to_string(), source.to_string()));
        Ok(())
    }

    /// Builds the render context of a node.
    pub(crate) fn context(&self, spec: &RenderSpec) -> Value {
        let mut map: BTreeMap<String, Value> = BTreeMap::new();
        let target = &spec.target;
        map.insert(
            "ref".into(),
            Value::from_object(RefFn {
                mode: spec.mode,
                recorder: spec.recorder.clone(),
                resolver: spec.resolver.clone(),
                target: target.clone(),
            }),
        );
        map.insert(
            "source".into(),
            Value::from_object(SourceFn {
                mode: spec.mode,
                recorder: spec.recorder.clone(),
                resolver: spec.resolver.clone(),
                target: target.clone(),
            }),
        );
        map.insert(
            "config".into(),
            Value::from_object(ConfigFn {
                mode: spec.mode,
                recorder: spec.recorder.clone(),
                config: spec.config.clone(),
            }),
        );
        map.insert(
            "var".into(),
            Value::from_object(VarFn {
                vars: spec.vars.clone(),
            }),
        );
        map.insert("this".into(), Value::from_object(spec.this.clone()));
        map.insert(
            "target".into(),
            to_value(serde_json::json!({
                "name": target.name, "schema": target.schema, "database": target.database,
                "type": target.type_, "threads": target.threads, "profile_name": target.name,
                "dbname": target.database,
            })),
        );
        let is_incremental = spec.is_incremental;
        map.insert(
            "is_incremental".into(),
            Value::from_function(move || is_incremental),
        );
        map.insert(
            "run_started_at".into(),
            Value::from_object(PyDateTime(spec.run_started_at)),
        );
        map.insert(
            "invocation_id".into(),
            Value::from(spec.invocation_id.clone()),
        );
        let log = Value::from_object(LogFn {
            recorder: spec.recorder.clone(),
        });
        map.insert("log".into(), log.clone());
        map.insert("print".into(), log);
        map.insert(
            "exceptions".into(),
            Value::from_object(Exceptions {
                recorder: spec.recorder.clone(),
            }),
        );
        map.insert("execute".into(), Value::from(spec.mode == Mode::Compile));
        map.insert(
            "flags".into(),
            to_value(serde_json::json!({
                "FULL_REFRESH": spec.full_refresh, "STORE_FAILURES": false, "WHICH": "run",
            })),
        );
        map.insert("model".into(), to_value(&spec.model));
        if let (Mode::Compile, Some(runner)) = (spec.mode, &spec.query_runner) {
            map.insert(
                "run_query".into(),
                Value::from_object(RunQuery {
                    runner: runner.clone(),
                }),
            );
        }
        for (key, value) in &spec.extra {
            map.insert(key.clone(), value.clone());
        }
        let base = Value::from(map);
        minijinja::context! { __ctx => base.clone(), ..base }
    }

    /// Renders a registered file template.
    pub(crate) fn render_file(&self, path: &str, ctx: Value) -> Result<String, TransformError> {
        let template = self
            .env
            .get_template(path)
            .map_err(|err| self.to_error(&err, path))?;
        template
            .render(ctx)
            .map_err(|err| self.to_error(&err, path))
    }

    /// Renders a template string that is not a file (test kwargs, hooks), named `name`.
    pub(crate) fn render_str(
        &self,
        name: &str,
        source: &str,
        ctx: Value,
    ) -> Result<String, TransformError> {
        self.env
            .render_named_str(name, source, ctx)
            .map_err(|err| jinja_error_at(&err, name, source))
    }

    /// Evaluates an expression (`ref('x')`, `generate_schema_name(a, b)`).
    pub(crate) fn eval(&self, name: &str, expr: &str, ctx: Value) -> Result<Value, TransformError> {
        let compiled = self
            .env
            .compile_expression_owned(expr.to_string())
            .map_err(|err| jinja_error_at(&err, name, expr))?;
        compiled.eval(ctx).map_err(|err| {
            if err.name().is_some_and(|n| self.files.contains_key(n)) {
                self.to_error(&err, name)
            } else {
                jinja_error_at(&err, name, expr)
            }
        })
    }

    /// Maps a minijinja error to a TransformError naming the file, line and line text,
    /// following nested errors to the innermost template that has a location.
    pub(crate) fn to_error(&self, err: &Error, fallback_path: &str) -> TransformError {
        let template = err.name().unwrap_or(fallback_path);
        match self.files.get(template) {
            Some((path, source)) => jinja_error_at(err, path, source),
            None => TransformError::Jinja {
                path: PathBuf::from(fallback_path),
                line: err.line(),
                message: error_message(err),
                text: String::new(),
            },
        }
    }
}

fn error_message(err: &Error) -> String {
    match (err.kind(), err.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    }
}

fn jinja_error_at(err: &Error, path: &str, source: &str) -> TransformError {
    let line = err.line();
    let text = line
        .and_then(|l| source.lines().nth(l.saturating_sub(1)))
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    TransformError::Jinja {
        path: PathBuf::from(path),
        line,
        message: error_message(err),
        text,
    }
}

/// Context-free globals: return, tojson/fromjson, zip, set, env_var, modules, api...
fn register_globals(env: &mut Environment<'static>) {
    env.add_function("return", |state: &mut State, value: Option<Value>| {
        state.set_temp(RETURN_TEMP, value.unwrap_or(Value::from(())));
        Err::<Value, Error>(Error::new(ErrorKind::InvalidOperation, RETURN_MARKER))
    });
    env.add_function(
        "env_var",
        |name: String, default: Option<Value>| -> Result<Value, Error> {
            match (std::env::var(&name), default) {
                (Ok(value), _) => Ok(Value::from(value)),
                (Err(_), Some(default)) => Ok(default),
                (Err(_), None) => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("Env var required but not provided: '{name}'"),
                )),
            }
        },
    );
    env.add_function(
        "tojson",
        |value: Value, kwargs: Kwargs| -> Result<Value, Error> {
            let _ = kwargs.get::<Option<bool>>("sort_keys")?;
            let json = to_json(&value)?;
            Ok(Value::from(json.to_string()))
        },
    );
    env.add_function(
        "fromjson",
        |text: String, default: Option<Value>| match serde_json::from_str::<serde_json::Value>(
            &text,
        ) {
            Ok(json) => to_value(&json),
            Err(_) => default.unwrap_or(Value::from(())),
        },
    );
    env.add_function("toyaml", |value: Value| -> Result<Value, Error> {
        let json = to_json(&value)?;
        serde_norway::to_string(&json)
            .map(Value::from)
            .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))
    });
    env.add_function("fromyaml", |text: String| -> Result<Value, Error> {
        serde_norway::from_str::<serde_json::Value>(&text)
            .map(|json| to_value(&json))
            .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))
    });
    env.add_function("zip", |lists: Rest<Value>| -> Result<Value, Error> {
        let mut columns = Vec::new();
        for list in lists.iter() {
            columns.push(list.try_iter()?.collect::<Vec<_>>());
        }
        let len = columns.iter().map(Vec::len).min().unwrap_or(0);
        Ok(Value::from(
            (0..len)
                .map(|i| Value::from(columns.iter().map(|c| c[i].clone()).collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
        ))
    });
    env.add_function("set", |value: Value| -> Result<Value, Error> {
        let mut seen: Vec<Value> = Vec::new();
        for item in value.try_iter()? {
            if !seen.contains(&item) {
                seen.push(item);
            }
        }
        Ok(Value::from(seen))
    });
    env.add_function("__polder_list", || {
        Value::from_object(MutableList::default())
    });
    env.add_function("__polder_dict", || {
        Value::from_object(MutableDict::default())
    });
    env.add_function("load_result", |_name: String| {
        to_value(serde_json::json!({"data": [], "table": null, "response": null}))
    });
    env.add_function("local_md5", |text: String| {
        use md5::Digest;
        format!("{:x}", md5::Md5::digest(text.as_bytes()))
    });
    env.add_function("run_query", |_sql: Value| -> Result<Value, Error> {
        // Query results at compile time need the runner's engine.
        Ok(Value::from(()))
    });
    env.add_global("dbt_version", DBT_VERSION);
    env.add_global(
        "graph",
        to_value(serde_json::json!({"nodes": {}, "sources": {}})),
    );
    let now = Value::from_function(|| Value::from_object(PyDateTime(Utc::now())));
    let today = Value::from_function(|| Value::from(Utc::now().format("%Y-%m-%d").to_string()));
    let datetime_class = Value::from(BTreeMap::from([
        ("now".to_string(), now.clone()),
        ("utcnow".to_string(), now),
    ]));
    let date_class = Value::from(BTreeMap::from([("today".to_string(), today)]));
    let datetime_module = Value::from(BTreeMap::from([
        ("datetime".to_string(), datetime_class),
        ("date".to_string(), date_class),
    ]));
    env.add_global(
        "modules",
        Value::from(BTreeMap::from([("datetime".to_string(), datetime_module)])),
    );
    let create = Value::from_function(|kwargs: Kwargs| -> Result<Value, Error> {
        let database: Option<String> = kwargs.get("database")?;
        let schema: Option<String> = kwargs.get("schema")?;
        let identifier: Option<String> = kwargs.get("identifier")?;
        let kind: Option<String> = kwargs.get("type")?;
        let mut relation = Relation::new(
            database.as_deref().unwrap_or(""),
            schema.as_deref().unwrap_or(""),
            identifier.as_deref().unwrap_or(""),
        );
        relation.kind = kind.unwrap_or_default();
        Ok(Value::from_object(relation))
    });
    let relation_class = Value::from(BTreeMap::from([("create".to_string(), create)]));
    env.add_global(
        "api",
        Value::from(BTreeMap::from([("Relation".to_string(), relation_class)])),
    );
}

/// The Python str/dict/list methods dbt projects call (`.upper()`, `.items()`, ...).
fn python_methods(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    let _ = state;
    if let Some(text) = value.as_str() {
        let arg = |i: usize| args.get(i).and_then(|v| v.as_str()).map(str::to_string);
        return Ok(match method {
            "upper" => Value::from(text.to_uppercase()),
            "lower" => Value::from(text.to_lowercase()),
            "strip" => Value::from(match arg(0) {
                Some(chars) => text.trim_matches(|c| chars.contains(c)).to_string(),
                None => text.trim().to_string(),
            }),
            "lstrip" => Value::from(text.trim_start().to_string()),
            "rstrip" => Value::from(text.trim_end().to_string()),
            "title" | "capitalize" => {
                let mut chars = text.chars();
                Value::from(match chars.next() {
                    Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                    None => String::new(),
                })
            }
            "split" => Value::from(match arg(0) {
                Some(sep) => text
                    .split(sep.as_str())
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
                None => text
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            }),
            "replace" => Value::from(text.replace(
                arg(0).unwrap_or_default().as_str(),
                arg(1).unwrap_or_default().as_str(),
            )),
            "startswith" => Value::from(text.starts_with(arg(0).unwrap_or_default().as_str())),
            "endswith" => Value::from(text.ends_with(arg(0).unwrap_or_default().as_str())),
            "isdigit" => Value::from(!text.is_empty() && text.chars().all(|c| c.is_ascii_digit())),
            "join" => {
                let items = args
                    .first()
                    .map(|v| {
                        v.try_iter()
                            .map(|it| it.map(|x| x.to_string()).collect::<Vec<_>>())
                    })
                    .transpose()?
                    .unwrap_or_default();
                Value::from(items.join(text))
            }
            "format" => {
                let mut out = text.to_string();
                for value in args {
                    out = out.replacen("{}", &value.to_string(), 1);
                }
                Value::from(out)
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        });
    }
    if value.kind() == ValueKind::Map {
        return match method {
            "items" => {
                let mut pairs = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    pairs.push(Value::from(vec![key, item]));
                }
                Ok(Value::from(pairs))
            }
            "keys" => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
            "values" => {
                let mut values = Vec::new();
                for key in value.try_iter()? {
                    values.push(value.get_item(&key)?);
                }
                Ok(Value::from(values))
            }
            "get" => {
                let key = args.first().cloned().unwrap_or(Value::from(()));
                let item = value.get_item(&key)?;
                Ok(if item.is_undefined() {
                    args.get(1).cloned().unwrap_or(Value::from(()))
                } else {
                    item
                })
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        };
    }
    if value.kind() == ValueKind::Seq && method == "append" {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "lists are immutable here: build a new list (`list + [item]`) instead of .append()",
        ));
    }
    Err(Error::from(ErrorKind::UnknownMethod))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_macro_and_test_blocks_with_lines() {
        let source = "-- header\n{% macro cents(col, scale=2) %}\n({{ col }} / 100)\n{% endmacro %}\n\n{%- test positive(model, column_name) -%}\nselect * from {{ model }} where {{ column_name }} < 0\n{%- endtest %}\n";
        let blocks = split_macro_blocks(source).expect("blocks");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].name, "cents");
        assert_eq!(blocks[0].arguments, vec!["col", "scale"]);
        assert_eq!(blocks[0].line, 2);
        assert_eq!(blocks[1].name, "test_positive");
        assert_eq!(blocks[1].line, 6);
        assert!(
            blocks[1]
                .rewritten
                .starts_with("{%- macro test_positive(model, column_name) -%}")
        );
        assert!(blocks[1].rewritten.ends_with("{%- endmacro %}"));
    }

    #[test]
    fn unclosed_macro_is_reported() {
        let err = split_macro_blocks("{% macro a() %}x").expect_err("unclosed");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn quotes_only_non_plain_identifiers() {
        assert_eq!(quote_identifier("orders"), "orders");
        assert_eq!(quote_identifier("Orders"), "\"Orders\"");
        assert_eq!(quote_identifier("my table"), "\"my table\"");
    }

    #[test]
    fn macro_return_value_reaches_the_caller() {
        let files = vec![(
            "macros/m.sql".to_string(),
            "{% macro pick(x) %}{% if x > 1 %}{{ return([x, 'big']) }}{% endif %}small{% endmacro %}\n{% macro outer() %}{% set r = pick(5) %}{{ r[1] }}-{{ pick(0) | trim }}{% endmacro %}".to_string(),
        )];
        let env = JinjaEnv::new("proj", &files).expect("env");
        let out = env
            .render_str("t", "{{ outer() }}|{{ proj.pick(3)[0] }}", Value::from(()))
            .expect("render");
        assert_eq!(out, "big-small|3");
    }
}
