//! DataFusion's view of Polder's catalog: schemas and tables from the catalog store, table data
//! from the lake.
//!
//! DataFusion asks for table *names* synchronously, so the engine keeps a listing of the catalog
//! in memory and brings it up to date before every statement (one query for the catalog's
//! generation number; the full listing only when it changed). Tables are loaded when a
//! statement uses them, always at their latest Delta version, so that a commit made by another
//! process (`polder import`, a second server) is visible to the next statement.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::datasource::{MemTable, ViewTable};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::TableType;
use datafusion::prelude::SessionContext;
use polder_catalog::{CatalogStore, TableEntry, TableKind};
use polder_core::CATALOG_NAME;
use polder_lake::Lake;
use polder_lake::deltalake::DeltaTable;

use polder_core::Role;

use crate::access::{self, SecurityListing};
use crate::error::{EngineError, Result};
use crate::history::history_batch;
use crate::table::PolderTable;

/// What the catalog held at one generation, arranged for lookups.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub generation: i64,
    /// schema name -> table name -> entry
    pub schemas: BTreeMap<String, BTreeMap<String, TableEntry>>,
}

impl Listing {
    pub fn entry(&self, schema: &str, table: &str) -> Option<&TableEntry> {
        self.schemas.get(schema)?.get(table)
    }
}

/// A table name with a time-travel suffix, as the SQL rewrite produces it (`orders@v3`).
///
/// `@` cannot appear in a Polder identifier, so these names never collide with real tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TableSelector {
    Latest,
    Version(i64),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    History,
}

pub(crate) fn split_selector(name: &str) -> Option<(&str, TableSelector)> {
    let Some((base, suffix)) = name.split_once('@') else {
        return Some((name, TableSelector::Latest));
    };
    let selector = if suffix == "history" {
        TableSelector::History
    } else if let Some(version) = suffix.strip_prefix('v') {
        TableSelector::Version(version.parse().ok()?)
    } else if let Some(millis) = suffix.strip_prefix('t') {
        TableSelector::Timestamp(millis.parse().ok()?)
    } else {
        return None;
    };
    Some((base, selector))
}

pub(crate) fn selector_suffix(selector: &TableSelector) -> String {
    match selector {
        TableSelector::Latest => String::new(),
        TableSelector::Version(v) => format!("@v{v}"),
        TableSelector::Timestamp(t) => format!("@t{t}"),
        TableSelector::History => "@history".to_string(),
    }
}

/// Shared state behind the DataFusion providers.
pub(crate) struct CatalogState {
    pub store: CatalogStore,
    pub lake: Lake,
    listing: RwLock<Arc<Listing>>,
    /// Roles and grants, reloaded with the listing.
    security: RwLock<Arc<SecurityListing>>,
    /// Loaded Delta tables by location, refreshed incrementally instead of reloaded.
    loaded: Mutex<HashMap<String, DeltaTable>>,
    /// Schemas other crates register in memory (for example `pg_catalog`).
    system_schemas: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
    /// The session views are planned in; weak because the session owns this state.
    session: RwLock<Weak<SessionContext>>,
    /// Reflections, reloaded with the listing.
    pub reflections: Arc<crate::reflection::Registry>,
}

impl std::fmt::Debug for CatalogState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogState")
            .field("store", &self.store.url())
            .field("lake", &self.lake.root().as_str())
            .finish()
    }
}

impl CatalogState {
    pub fn new(store: CatalogStore, lake: Lake) -> Self {
        CatalogState {
            store,
            lake,
            listing: RwLock::new(Arc::new(Listing {
                generation: -1,
                schemas: BTreeMap::new(),
            })),
            security: RwLock::new(Arc::new(SecurityListing::default())),
            loaded: Mutex::new(HashMap::new()),
            system_schemas: RwLock::new(BTreeMap::new()),
            session: RwLock::new(Weak::new()),
            reflections: Arc::default(),
        }
    }

    pub fn set_session(&self, session: &Arc<SessionContext>) {
        *self.session.write().expect("session lock") = Arc::downgrade(session);
    }

    pub fn listing(&self) -> Arc<Listing> {
        self.listing.read().expect("listing lock").clone()
    }

    pub fn security(&self) -> Arc<SecurityListing> {
        self.security.read().expect("security lock").clone()
    }

    /// Brings the in-memory listing up to date with the catalog store.
    pub async fn sync(&self) -> Result<()> {
        let generation = self.store.generation().await?;
        if generation == self.listing().generation {
            return Ok(());
        }
        self.reload().await
    }

    /// Reloads the listing unconditionally (after this process changed the catalog).
    pub async fn reload(&self) -> Result<()> {
        let snapshot = self.store.snapshot().await?;
        let roles = self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter_map(|user| Some((user.name, user.role.parse::<Role>().ok()?)))
            .collect();
        let grants = self.store.list_grants().await?;
        let mut rules: HashMap<(String, String), access::TableRules> = HashMap::new();
        for policy in self.store.list_row_policies().await? {
            rules
                .entry((policy.schema.clone(), policy.table.clone()))
                .or_default()
                .policies
                .push(policy);
        }
        for mask in self.store.list_column_masks().await? {
            rules
                .entry((mask.schema.clone(), mask.table.clone()))
                .or_default()
                .masks
                .push(mask);
        }
        let attributes = self.store.user_attributes().await?.into_iter().collect();
        let mut schemas: BTreeMap<String, BTreeMap<String, TableEntry>> = snapshot
            .schemas
            .into_iter()
            .map(|s| (s.name, BTreeMap::new()))
            .collect();
        for table in snapshot.tables {
            schemas
                .entry(table.schema.clone())
                .or_default()
                .insert(table.name.clone(), table);
        }
        let listing = Arc::new(Listing {
            generation: snapshot.generation,
            schemas,
        });
        {
            let mut current = self.listing.write().expect("listing lock");
            if listing.generation >= current.generation {
                *current = listing;
                *self.security.write().expect("security lock") = Arc::new(SecurityListing {
                    roles,
                    grants,
                    rules,
                    attributes,
                });
            }
        }
        self.reflections.reload(&self.store, &self.lake).await?;
        Ok(())
    }

    /// The latest version of the Delta table at `location`.
    pub async fn load_latest(&self, location: &str) -> Result<DeltaTable> {
        let cached = self
            .loaded
            .lock()
            .expect("loaded tables lock")
            .get(location)
            .cloned();
        let table = match cached {
            Some(mut table) => {
                self.lake.refresh(&mut table).await?;
                table
            }
            None => self.lake.load(location).await?,
        };
        self.remember(&table);
        Ok(table)
    }

    /// Keeps `table` as the newest known state of its location.
    pub fn remember(&self, table: &DeltaTable) {
        let location = table.table_url().to_string();
        let mut loaded = self.loaded.lock().expect("loaded tables lock");
        let newer = loaded
            .get(&location)
            .is_none_or(|known| known.version() <= table.version());
        if newer {
            loaded.insert(location, table.clone());
        }
    }

    pub fn forget(&self, location: &str) {
        self.loaded
            .lock()
            .expect("loaded tables lock")
            .remove(location);
    }

    fn system_schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.system_schemas
            .read()
            .expect("system schemas lock")
            .get(name)
            .cloned()
    }

    /// Resolves `schema.name` (with an optional time-travel suffix) to a provider.
    async fn resolve(
        self: &Arc<Self>,
        schema: &str,
        name: &str,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some((base, selector)) = split_selector(name) else {
            return Ok(None);
        };
        let listing = self.listing();
        let Some(entry) = listing.entry(schema, base).cloned() else {
            return Ok(None);
        };
        let access = access::current();
        if let Some(access) = &access
            && let Err(denied) = self.security().check_table(access, schema, base)
        {
            if !access.statement_audited {
                crate::audit::record_refused_table(&self.store, access, schema, base, &denied);
            }
            return Err(denied);
        }
        let is_history = matches!(selector, TableSelector::History);
        let provider = match (entry.kind, selector) {
            (TableKind::View, TableSelector::Latest) => self.view_provider(&entry).await?,
            (TableKind::View, _) => {
                return Err(EngineError::InvalidInput(format!(
                    "'{}' is a view: time travel and history apply to tables",
                    entry.qualified_name()
                )));
            }
            (TableKind::Table, selector) => self.table_provider(&entry, selector).await?,
        };
        // Row policies and column masks: every path that reads a table comes through here.
        let security = self.security();
        match (&access, security.rules_of(schema, base)) {
            (Some(access), Some(_)) if is_history && !access.reader.is_admin() => {
                // Commit parameters and metrics would tell about hidden rows.
                Err(EngineError::PermissionDenied(format!(
                    "the history of {schema}.{base} is for admins: it has row policies or column masks"
                )))
            }
            (Some(access), Some(rules)) if !access.reader.is_admin() => {
                let session = self.session_state()?;
                crate::governance::govern(
                    provider, schema, base, rules, access, &security, &session,
                )
                .map(Some)
            }
            _ => Ok(Some(provider)),
        }
    }

    /// The engine's current session state (functions and settings for planning).
    pub(crate) fn session_state(&self) -> Result<datafusion::execution::SessionState> {
        self.session
            .read()
            .expect("session lock")
            .upgrade()
            .map(|session| session.state())
            .ok_or_else(|| EngineError::InvalidInput("the engine is shutting down".to_string()))
    }

    async fn table_provider(
        self: &Arc<Self>,
        entry: &TableEntry,
        selector: TableSelector,
    ) -> Result<Arc<dyn TableProvider>> {
        let location = entry.location.as_deref().ok_or_else(|| {
            EngineError::NotFound(format!(
                "table '{}' has no location",
                entry.qualified_name()
            ))
        })?;
        let (table, writable) = match selector {
            TableSelector::Latest => (self.load_latest(location).await?, true),
            TableSelector::Version(version) => {
                (self.lake.load_version(location, version).await?, false)
            }
            TableSelector::Timestamp(millis) => {
                let at: DateTime<Utc> =
                    DateTime::from_timestamp_millis(millis).ok_or_else(|| {
                        EngineError::InvalidInput(format!("timestamp {millis} is out of range"))
                    })?;
                (self.lake.load_at(location, at).await?, false)
            }
            TableSelector::History => {
                let table = self.load_latest(location).await?;
                let history = self.lake.history(&table, None).await?;
                let batch = history_batch(&history)?;
                let mem = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
                return Ok(Arc::new(mem));
            }
        };
        let session = self
            .session
            .read()
            .expect("session lock")
            .upgrade()
            .map(|session| Arc::new(session.state()));
        let provider = PolderTable::try_new(
            entry.qualified_name(),
            table,
            writable,
            self.clone(),
            session,
        )
        .await?;
        Ok(Arc::new(provider))
    }

    async fn view_provider(&self, entry: &TableEntry) -> Result<Arc<dyn TableProvider>> {
        let definition = entry.definition.clone().unwrap_or_default();
        let state = self.session_state()?;
        // The definition is planned with its owner's rights, not the reader's.
        let reader = access::current().map(|access| access.reader.clone());
        let owner = self.security().owner_access(entry.owner.as_deref(), reader);
        let plan = access::run_with(owner, state.create_logical_plan(&definition))
            .await
            .map_err(|e| {
                EngineError::InvalidInput(format!(
                    "view '{}' is invalid (a table it reads may have been dropped or changed): {}",
                    entry.qualified_name(),
                    crate::error::datafusion_message(&e)
                ))
            })?;
        Ok(Arc::new(ViewTable::new(plan, Some(definition))))
    }
}

/// The one catalog list of a Polder session: the `polder` catalog.
#[derive(Debug)]
pub(crate) struct PolderCatalogList {
    catalog: Arc<PolderCatalog>,
}

impl PolderCatalogList {
    pub fn new(state: Arc<CatalogState>) -> Self {
        PolderCatalogList {
            catalog: Arc::new(PolderCatalog { state }),
        }
    }
}

impl CatalogProviderList for PolderCatalogList {
    fn register_catalog(
        &self,
        name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        tracing::warn!(catalog = %name, "ignoring registration of an extra catalog");
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![CATALOG_NAME.to_string()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == CATALOG_NAME).then(|| self.catalog.clone() as Arc<dyn CatalogProvider>)
    }
}

#[derive(Debug)]
pub(crate) struct PolderCatalog {
    state: Arc<CatalogState>,
}

impl CatalogProvider for PolderCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.listing().schemas.keys().cloned().collect();
        names.extend(
            self.state
                .system_schemas
                .read()
                .expect("system schemas lock")
                .keys()
                .cloned(),
        );
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(system) = self.state.system_schema(name) {
            return Some(system);
        }
        if !self.state.listing().schemas.contains_key(name) {
            return None;
        }
        Some(Arc::new(PolderSchema {
            name: name.to_string(),
            state: self.state.clone(),
        }))
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        // Only in-memory schemas of other components (pg_catalog) come through here;
        // `CREATE SCHEMA` is handled by the engine, which writes the catalog store.
        Ok(self
            .state
            .system_schemas
            .write()
            .expect("system schemas lock")
            .insert(name.to_string(), schema))
    }
}

#[derive(Debug)]
pub(crate) struct PolderSchema {
    name: String,
    state: Arc<CatalogState>,
}

#[async_trait]
impl SchemaProvider for PolderSchema {
    fn table_names(&self) -> Vec<String> {
        self.state
            .listing()
            .schemas
            .get(&self.name)
            .map(|tables| tables.keys().cloned().collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        self.state
            .resolve(&self.name, name)
            .await
            .map_err(EngineError::into_datafusion)
    }

    async fn table_type(&self, name: &str) -> DfResult<Option<TableType>> {
        let listing = self.state.listing();
        Ok(listing
            .entry(&self.name, name)
            .map(|entry| match entry.kind {
                TableKind::Table => TableType::Base,
                TableKind::View => TableType::View,
            }))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot register '{name}' in schema '{}' directly; use CREATE TABLE or CREATE VIEW",
            self.name
        )))
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot deregister '{name}' directly; use DROP TABLE or DROP VIEW"
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        match split_selector(name) {
            Some((base, _)) => self.state.listing().entry(&self.name, base).is_some(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_round_trip() {
        for selector in [
            TableSelector::Version(3),
            TableSelector::Timestamp(1_700_000_000_000),
            TableSelector::History,
        ] {
            let name = format!("orders{}", selector_suffix(&selector));
            assert_eq!(split_selector(&name), Some(("orders", selector)));
        }
        assert_eq!(
            split_selector("orders"),
            Some(("orders", TableSelector::Latest))
        );
        assert_eq!(split_selector("orders@x"), None);
        assert_eq!(split_selector("orders@vx"), None);
    }
}
