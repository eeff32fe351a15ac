//! The `--demo` dataset: a small online shop, generated (no download), loaded into bronze and
//! refined into silver and gold with SQL, so that a first user sees the layers at once.
//!
//! Generation is deterministic (a fixed seed), so every demo has the same numbers.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use polder_core::TableName;
use polder_engine::{Engine, WriteMode};

const CUSTOMERS: usize = 2_000;
const PRODUCTS: usize = 120;
const ORDERS: usize = 25_000;

/// splitmix64: a tiny deterministic generator, enough for demo data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const FIRST_NAMES: &[&str] = &[
    "Anna", "Bram", "Chloé", "Daan", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jonas", "Kira",
    "Lars", "Mila", "Noah", "Olivia", "Pablo", "Quinn", "Rosa", "Sem", "Tess", "Uma", "Victor",
    "Wout", "Yara", "Zoë",
];
const LAST_NAMES: &[&str] = &[
    "de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "Müller", "Dubois", "García",
    "Rossi", "Novak", "Andersen", "Kowalski", "Silva", "O'Brien", "Nakamura",
];
const COUNTRIES: &[(&str, &[&str])] = &[
    (
        "Netherlands",
        &["Amsterdam", "Rotterdam", "Utrecht", "Groningen"],
    ),
    ("Germany", &["Berlin", "Hamburg", "Munich", "Cologne"]),
    ("France", &["Paris", "Lyon", "Marseille"]),
    ("Belgium", &["Brussels", "Antwerp", "Ghent"]),
    ("Spain", &["Madrid", "Barcelona", "Valencia"]),
    ("Italy", &["Milan", "Rome", "Turin"]),
    ("Denmark", &["Copenhagen", "Aarhus"]),
    ("Poland", &["Warsaw", "Kraków"]),
];
const SEGMENTS: &[&str] = &[
    "consumer",
    "consumer",
    "consumer",
    "small business",
    "enterprise",
];
const CATEGORIES: &[&str] = &[
    "Bikes",
    "Components",
    "Clothing",
    "Accessories",
    "Helmets",
    "Lights",
    "Tools",
    "Nutrition",
];
const ADJECTIVES: &[&str] = &[
    "Classic", "Urban", "Trail", "Pro", "Lite", "Storm", "Polder", "Dyke",
];
const NOUNS: &[&str] = &[
    "Rider", "Commuter", "Explorer", "Runner", "Glider", "Sprinter",
];
const CHANNELS: &[&str] = &["web", "web", "web", "mobile", "mobile", "store"];

fn decimal(values: Vec<i128>, precision: u8, scale: i8) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(values)
            .with_precision_and_scale(precision, scale)
            .expect("valid decimal precision"),
    )
}

fn customers(random: &mut Random) -> RecordBatch {
    let mut ids = Vec::with_capacity(CUSTOMERS);
    let mut first = Vec::with_capacity(CUSTOMERS);
    let mut last = Vec::with_capacity(CUSTOMERS);
    let mut emails = Vec::with_capacity(CUSTOMERS);
    let mut countries = Vec::with_capacity(CUSTOMERS);
    let mut cities = Vec::with_capacity(CUSTOMERS);
    let mut segments = Vec::with_capacity(CUSTOMERS);
    let mut signups = Vec::with_capacity(CUSTOMERS);
    // 2023-01-01 is day 19358 since the epoch.
    for id in 1..=CUSTOMERS as i64 {
        let first_name = random.pick(FIRST_NAMES);
        let last_name = random.pick(LAST_NAMES);
        let (country, city_list) = COUNTRIES[random.below(COUNTRIES.len())];
        let handle = format!(
            "{}.{}{}",
            first_name,
            last_name.replace([' ', '\''], ""),
            id
        );
        // Raw data is messy on purpose: silver cleans the e-mail addresses.
        let email = if id % 7 == 0 {
            format!("  {}@Example.COM ", handle.to_uppercase())
        } else {
            format!("{}@example.com", handle.to_lowercase())
        };
        ids.push(id);
        first.push(first_name.to_string());
        last.push(last_name.to_string());
        emails.push(email);
        countries.push(country.to_string());
        cities.push(city_list[random.below(city_list.len())].to_string());
        segments.push(random.pick(SEGMENTS).to_string());
        signups.push(19_358 + random.below(1_000) as i32);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("first_name", DataType::Utf8, false),
        Field::new("last_name", DataType::Utf8, false),
        Field::new("email", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("segment", DataType::Utf8, false),
        Field::new("signup_date", DataType::Date32, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(first)),
            Arc::new(StringArray::from(last)),
            Arc::new(StringArray::from(emails)),
            Arc::new(StringArray::from(countries)),
            Arc::new(StringArray::from(cities)),
            Arc::new(StringArray::from(segments)),
            Arc::new(Date32Array::from(signups)),
        ],
    )
    .expect("demo customers batch")
}

/// Products and their prices in cents (used again for order lines).
fn products(random: &mut Random) -> (RecordBatch, Vec<i128>) {
    let mut ids = Vec::with_capacity(PRODUCTS);
    let mut names = Vec::with_capacity(PRODUCTS);
    let mut categories = Vec::with_capacity(PRODUCTS);
    let mut prices = Vec::with_capacity(PRODUCTS);
    let mut costs = Vec::with_capacity(PRODUCTS);
    for id in 1..=PRODUCTS as i64 {
        let category = CATEGORIES[(id as usize - 1) % CATEGORIES.len()];
        let base = match category {
            "Bikes" => 60_000,
            "Components" => 8_000,
            "Helmets" => 6_000,
            "Clothing" => 4_500,
            "Lights" => 2_500,
            "Tools" => 3_000,
            "Nutrition" => 500,
            _ => 1_500,
        };
        let price = (base + random.below(base as usize) as i128) / 10 * 10 - 1;
        ids.push(id);
        names.push(format!(
            "{} {} {}",
            random.pick(ADJECTIVES),
            category.trim_end_matches('s'),
            random.pick(NOUNS)
        ));
        categories.push(category.to_string());
        prices.push(price);
        costs.push(price * (45 + random.below(25) as i128) / 100);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("product_name", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("unit_price", DataType::Decimal128(10, 2), false),
        Field::new("unit_cost", DataType::Decimal128(10, 2), false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(categories)),
            decimal(prices.clone(), 10, 2),
            decimal(costs, 10, 2),
        ],
    )
    .expect("demo products batch");
    (batch, prices)
}

fn orders_and_lines(random: &mut Random, prices: &[i128]) -> (RecordBatch, RecordBatch) {
    // Orders between 2024-01-01 and 2025-12-31, more of them towards the end of each year.
    const START_MICROS: i64 = 1_704_067_200_000_000;
    const SPAN_DAYS: u64 = 731;
    let mut order_ids = Vec::with_capacity(ORDERS);
    let mut customer_ids = Vec::with_capacity(ORDERS);
    let mut ordered_at = Vec::with_capacity(ORDERS);
    let mut statuses = Vec::with_capacity(ORDERS);
    let mut channels = Vec::with_capacity(ORDERS);
    let mut line_orders = Vec::new();
    let mut line_numbers = Vec::new();
    let mut line_products = Vec::new();
    let mut quantities = Vec::new();
    let mut line_prices = Vec::new();
    let mut discounts = Vec::new();
    for order_id in 1..=ORDERS as i64 {
        let day = loop {
            let candidate = random.below(SPAN_DAYS as usize) as f64;
            let season = 0.55 + 0.45 * ((candidate % 365.0) / 365.0).powi(2);
            let growth = 0.7 + 0.3 * candidate / SPAN_DAYS as f64;
            if random.unit() < season * growth {
                break candidate as i64;
            }
        };
        let second_of_day = 7 * 3600 + random.below(16 * 3600) as i64;
        let status = match random.below(100) {
            0..=3 => "cancelled",
            4..=7 => "returned",
            8..=14 => "shipped",
            15..=17 => "placed",
            _ => "delivered",
        };
        order_ids.push(order_id);
        customer_ids.push(1 + random.below(CUSTOMERS) as i64);
        ordered_at.push(START_MICROS + (day * 86_400 + second_of_day) * 1_000_000);
        statuses.push(status);
        channels.push(random.pick(CHANNELS));
        let lines = 1 + random.below(4);
        for line in 1..=lines as i32 {
            let product = random.below(prices.len());
            line_orders.push(order_id);
            line_numbers.push(line);
            line_products.push(product as i64 + 1);
            quantities.push(1 + random.below(if product % 8 == 7 { 6 } else { 2 }) as i32);
            line_prices.push(prices[product]);
            discounts.push([0i128, 0, 0, 5, 10, 20][random.below(6)]);
        }
    }
    let order_schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new(
            "ordered_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("status", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
    ]));
    let orders = RecordBatch::try_new(
        order_schema,
        vec![
            Arc::new(Int64Array::from(order_ids)),
            Arc::new(Int64Array::from(customer_ids)),
            Arc::new(TimestampMicrosecondArray::from(ordered_at).with_timezone("UTC")),
            Arc::new(StringArray::from(statuses)),
            Arc::new(StringArray::from(channels)),
        ],
    )
    .expect("demo orders batch");
    let line_schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("line_number", DataType::Int32, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("quantity", DataType::Int32, false),
        Field::new("unit_price", DataType::Decimal128(10, 2), false),
        Field::new("discount", DataType::Decimal128(4, 2), false),
    ]));
    let lines = RecordBatch::try_new(
        line_schema,
        vec![
            Arc::new(Int64Array::from(line_orders)),
            Arc::new(Int32Array::from(line_numbers)),
            Arc::new(Int64Array::from(line_products)),
            Arc::new(Int32Array::from(quantities)),
            decimal(line_prices, 10, 2),
            decimal(discounts, 4, 2),
        ],
    )
    .expect("demo order lines batch");
    (orders, lines)
}

/// The silver and gold layers, built from bronze with SQL.
const TRANSFORMS: &[(&str, &str)] = &[
    (
        "silver.customers",
        "SELECT customer_id, first_name || ' ' || last_name AS customer_name, lower(trim(email)) AS email,
                country, city, segment, signup_date
         FROM bronze.shop_customers",
    ),
    (
        "silver.products",
        "SELECT product_id, product_name, category, unit_price, unit_cost,
                CAST(unit_price - unit_cost AS DECIMAL(10, 2)) AS unit_margin
         FROM bronze.shop_products",
    ),
    (
        "silver.order_lines",
        "SELECT o.order_id, l.line_number, o.customer_id, o.ordered_at, CAST(o.ordered_at AS DATE) AS order_date,
                o.status, o.channel, l.product_id, p.category, l.quantity, l.unit_price, l.discount,
                CAST(l.quantity * l.unit_price * (1 - l.discount) AS DECIMAL(12, 2)) AS amount,
                CAST(l.quantity * p.unit_cost AS DECIMAL(12, 2)) AS cost
         FROM bronze.shop_orders o
         JOIN bronze.shop_order_items l ON l.order_id = o.order_id
         JOIN bronze.shop_products p ON p.product_id = l.product_id
         WHERE o.status <> 'cancelled'",
    ),
    (
        "silver.orders",
        "SELECT order_id, customer_id, ordered_at, order_date, status, channel,
                count(*) AS lines, sum(quantity) AS items,
                CAST(sum(amount) AS DECIMAL(14, 2)) AS amount, CAST(sum(cost) AS DECIMAL(14, 2)) AS cost
         FROM silver.order_lines
         GROUP BY order_id, customer_id, ordered_at, order_date, status, channel",
    ),
    (
        "gold.daily_revenue",
        "SELECT order_date, count(*) AS orders, count(DISTINCT customer_id) AS customers,
                CAST(sum(amount) AS DECIMAL(14, 2)) AS revenue,
                CAST(sum(amount - cost) AS DECIMAL(14, 2)) AS gross_margin,
                CAST(avg(amount) AS DECIMAL(12, 2)) AS avg_order_value
         FROM silver.orders WHERE status <> 'returned'
         GROUP BY order_date",
    ),
    (
        "gold.monthly_revenue_by_category",
        "SELECT CAST(date_trunc('month', order_date) AS DATE) AS month, category,
                count(DISTINCT order_id) AS orders, sum(quantity) AS units,
                CAST(sum(amount) AS DECIMAL(14, 2)) AS revenue
         FROM silver.order_lines WHERE status <> 'returned'
         GROUP BY 1, 2",
    ),
    (
        "gold.channel_performance",
        "SELECT CAST(date_trunc('month', order_date) AS DATE) AS month, channel,
                count(*) AS orders, CAST(sum(amount) AS DECIMAL(14, 2)) AS revenue,
                CAST(avg(CASE WHEN status = 'returned' THEN 1.0 ELSE 0.0 END) AS DECIMAL(6, 4)) AS return_rate
         FROM silver.orders
         GROUP BY 1, 2",
    ),
    (
        "gold.customer_lifetime_value",
        "SELECT c.customer_id, c.customer_name, c.country, c.segment,
                min(o.ordered_at) AS first_order_at, max(o.ordered_at) AS last_order_at,
                count(o.order_id) AS orders, CAST(coalesce(sum(o.amount), 0) AS DECIMAL(14, 2)) AS revenue
         FROM silver.customers c
         LEFT JOIN silver.orders o ON o.customer_id = c.customer_id AND o.status <> 'returned'
         GROUP BY c.customer_id, c.customer_name, c.country, c.segment",
    ),
    (
        "gold.revenue_by_country",
        "SELECT c.country, count(DISTINCT o.customer_id) AS customers, count(*) AS orders,
                CAST(sum(o.amount) AS DECIMAL(14, 2)) AS revenue
         FROM silver.orders o JOIN silver.customers c ON c.customer_id = o.customer_id
         WHERE o.status <> 'returned'
         GROUP BY c.country",
    ),
    (
        "gold.sales",
        "SELECT l.order_date, c.country, c.segment, l.channel, l.category,
                count(DISTINCT l.order_id) AS orders, sum(l.quantity) AS units,
                CAST(sum(l.amount) AS DECIMAL(14, 2)) AS revenue,
                CAST(sum(l.amount - l.cost) AS DECIMAL(14, 2)) AS gross_margin
         FROM silver.order_lines l JOIN silver.customers c ON c.customer_id = l.customer_id
         WHERE l.status <> 'returned'
         GROUP BY 1, 2, 3, 4, 5",
    ),
];

async fn exists(engine: &Engine, name: &str) -> anyhow::Result<bool> {
    let name = TableName::parse(name)?;
    Ok(engine
        .catalog_store()
        .get_table(&name.schema, &name.table)
        .await?
        .is_some())
}

async fn load_bronze(engine: &Engine, name: &str, batch: RecordBatch) -> anyhow::Result<()> {
    if exists(engine, name).await? {
        return Ok(());
    }
    let schema = batch.schema();
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    let plan =
        LogicalPlanBuilder::scan("demo", provider_as_source(Arc::new(table)), None)?.build()?;
    let state = Arc::new(engine.session().state());
    engine
        .write_table(&TableName::parse(name)?, plan, state, WriteMode::Create)
        .await?;
    Ok(())
}

/// Loads whatever part of the demo is missing (a restart with `--demo` finds it complete).
pub async fn ensure_loaded(engine: &Engine) -> anyhow::Result<()> {
    if exists(engine, TRANSFORMS[TRANSFORMS.len() - 1].0).await? {
        return Ok(());
    }
    let mut random = Random(0x_506F_6C64_6572);
    let customers = customers(&mut random);
    let (products, prices) = products(&mut random);
    let (orders, lines) = orders_and_lines(&mut random, &prices);
    load_bronze(engine, "bronze.shop_customers", customers).await?;
    load_bronze(engine, "bronze.shop_products", products).await?;
    load_bronze(engine, "bronze.shop_orders", orders).await?;
    load_bronze(engine, "bronze.shop_order_items", lines).await?;
    for (name, query) in TRANSFORMS {
        if exists(engine, name).await? {
            continue;
        }
        engine
            .execute_sql(&format!("CREATE TABLE {name} AS {query}"))
            .await?;
    }
    tracing::info!("demo dataset loaded: bronze.shop_*, silver.*, gold.*");
    Ok(())
}

/// The demo dashboard's owner: the user `polder serve` creates first.
const DEMO_OWNER: &str = "admin";
const DEMO_DASHBOARD: &str = "Shop overview";

/// The demo dashboard's charts: (name, spec, tile x, y, w, h on the 12-column grid).
fn demo_charts() -> Vec<(&'static str, serde_json::Value, [u32; 4])> {
    use serde_json::json;
    let revenue = json!({"agg": "sum", "column": "revenue", "label": "Revenue"});
    vec![
        (
            "Revenue",
            json!({"type": "big_number", "source": {"table": "gold.sales"},
                   "dimensions": [{"column": "order_date", "time_grain": "month"}],
                   "measures": [revenue]}),
            [0, 0, 3, 3],
        ),
        (
            "Orders",
            json!({"type": "big_number", "source": {"table": "gold.sales"},
                   "dimensions": [{"column": "order_date", "time_grain": "month"}],
                   "measures": [{"agg": "sum", "column": "orders", "label": "Orders"}]}),
            [0, 3, 3, 3],
        ),
        (
            "Revenue by month",
            json!({"type": "line", "source": {"table": "gold.sales"},
                   "dimensions": [{"column": "order_date", "time_grain": "month"}],
                   "measures": [revenue, {"agg": "sum", "column": "gross_margin", "label": "Gross margin"}]}),
            [3, 0, 9, 6],
        ),
        (
            "Revenue by category",
            json!({"type": "stacked_bar", "source": {"table": "gold.sales"},
                   "dimensions": [{"column": "order_date", "time_grain": "quarter"}, {"column": "category"}],
                   "measures": [revenue]}),
            [0, 6, 8, 6],
        ),
        (
            "Revenue by channel",
            json!({"type": "pie", "source": {"table": "gold.sales"},
                   "dimensions": [{"column": "channel"}], "measures": [revenue]}),
            [8, 6, 4, 6],
        ),
        (
            "Revenue by country",
            json!({"type": "bar", "source": {"table": "gold.sales"},
                   "dimensions": [{"column": "country"}], "measures": [revenue]}),
            [0, 12, 6, 6],
        ),
        (
            "Orders by segment and channel",
            json!({"type": "heatmap", "source": {"table": "gold.sales"},
                   "dimensions": [{"column": "segment"}, {"column": "channel"}],
                   "measures": [{"agg": "sum", "column": "orders", "label": "Orders"}]}),
            [6, 12, 6, 6],
        ),
        (
            "Top customers",
            json!({"type": "table", "source": {"table": "gold.customer_lifetime_value"},
                   "dimensions": [{"column": "customer_name"}, {"column": "country"}, {"column": "segment"}],
                   "measures": [{"agg": "sum", "column": "orders", "label": "Orders"}, revenue],
                   "sort": {"by": "Revenue", "desc": true}, "limit": 20}),
            [0, 18, 12, 6],
        ),
    ]
}

/// Saves the demo dashboard and its charts, unless a dashboard of that name exists.
pub async fn ensure_dashboard(engine: &Engine) -> anyhow::Result<()> {
    use polder_catalog::SavedObjectKind;
    let store = engine.catalog_store();
    let dashboards = store.list_saved_objects(SavedObjectKind::Dashboard).await?;
    if dashboards.iter().any(|d| d.name == DEMO_DASHBOARD) {
        return Ok(());
    }
    let mut tiles = Vec::new();
    for (name, spec, [x, y, w, h]) in demo_charts() {
        // Checked as the API checks a chart, so the demo cannot hold one the UI cannot draw.
        let spec: polder_server::charts::ChartSpec = serde_json::from_value(spec)?;
        spec.check_shape().map_err(anyhow::Error::msg)?;
        let body = serde_json::to_string(&serde_json::json!({ "spec": spec }))?;
        let chart = store
            .create_saved_object(SavedObjectKind::Chart, name, "", DEMO_OWNER, &body)
            .await?;
        tiles.push(polder_server::Tile {
            chart_id: chart.id,
            x,
            y,
            w,
            h,
        });
    }
    let body = polder_server::DashboardBody {
        refresh_seconds: 0,
        // Admins and engineers see every dashboard; sharing with others is the owner's choice.
        shared_with: Vec::new(),
        filters: ["country", "channel", "category"]
            .into_iter()
            .map(|column| polder_server::DashboardFilter {
                column: column.to_string(),
                label: String::new(),
                op: "=".to_string(),
                default: None,
            })
            .collect(),
        tiles,
    };
    store
        .create_saved_object(
            SavedObjectKind::Dashboard,
            DEMO_DASHBOARD,
            "Revenue, orders and customers of the demo shop, from the gold layer.",
            DEMO_OWNER,
            &serde_json::to_string(&body)?,
        )
        .await?;
    Ok(())
}
