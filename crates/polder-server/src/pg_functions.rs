//! Functions PostgreSQL clients call when they connect or inspect a database, which neither
//! DataFusion nor `datafusion-postgres` provide in the form clients expect.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// The PostgreSQL version Polder's wire protocol speaks (the one pgwire announces).
pub const POSTGRES_VERSION: &str = "16.6";

/// A function returning a constant (or NULL) whatever its arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    value: ScalarValue,
    signature: Signature,
}

impl Constant {
    fn udf(name: &'static str, value: ScalarValue, signature: Signature) -> ScalarUDF {
        ScalarUDF::from(Constant {
            name,
            value,
            signature,
        })
    }
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `json_build_object(key, value, ...)`: a JSON object from key/value pairs, as text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

fn json_value(
    array: &dyn datafusion::arrow::array::Array,
    row: usize,
) -> Result<serde_json::Value> {
    use datafusion::arrow::util::display::array_value_to_string;
    if array.is_null(row) {
        return Ok(serde_json::Value::Null);
    }
    let text = array_value_to_string(array, row)?;
    let data_type = array.data_type();
    if data_type == &DataType::Boolean {
        return Ok(serde_json::Value::Bool(text == "true"));
    }
    if data_type.is_numeric()
        && let Ok(number) = text.parse::<serde_json::Number>()
    {
        return Ok(serde_json::Value::Number(number));
    }
    Ok(serde_json::Value::String(text))
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::StringBuilder;
        use datafusion::arrow::util::display::array_value_to_string;
        if !args.args.len().is_multiple_of(2) {
            return datafusion::common::plan_err!(
                "json_build_object takes key/value pairs (an even number of arguments)"
            );
        }
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|arg| arg.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let mut builder = StringBuilder::new();
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = array_value_to_string(pair[0].as_ref(), row)?;
                object.insert(key, json_value(pair[1].as_ref(), row)?);
            }
            builder.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(std::sync::Arc::new(builder.finish())))
    }
}

/// `pg_sleep(seconds)`: waits, then answers NULL, as PostgreSQL's does (for every row it is
/// evaluated on). Asynchronous, so a sleeping statement holds no thread; cancelling the
/// statement ends the wait.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgSleep {
    signature: Signature,
}

/// The longest one call may wait (PostgreSQL has no limit; a typo should not hang a server).
const PG_SLEEP_LIMIT_SECS: f64 = 3600.0;

impl ScalarUDFImpl for PgSleep {
    fn name(&self) -> &str {
        "pg_sleep"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        datafusion::common::exec_err!("pg_sleep runs asynchronously")
    }
}

#[async_trait::async_trait]
impl datafusion::logical_expr::async_udf::AsyncScalarUDFImpl for PgSleep {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{Array, Float64Array};
        let rows = args.number_rows;
        let seconds = args.args[0].to_array(rows)?;
        let seconds = datafusion::arrow::compute::cast(&seconds, &DataType::Float64)?;
        let seconds = seconds
            .as_any()
            .downcast_ref::<Float64Array>()
            .map(|values| values.iter().flatten().filter(|s| *s > 0.0).sum::<f64>())
            .unwrap_or(0.0);
        if !seconds.is_finite() || seconds > PG_SLEEP_LIMIT_SECS {
            return datafusion::common::plan_err!(
                "pg_sleep waits at most {PG_SLEEP_LIMIT_SECS} seconds per statement"
            );
        }
        tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await;
        Ok(ColumnarValue::Array(
            datafusion::arrow::array::new_null_array(&DataType::Utf8, rows),
        ))
    }
}

/// Registers the functions on `session`.
pub fn register(session: &SessionContext) {
    // Clients parse `PostgreSQL <major>.<minor>` out of version() (SQLAlchemy refuses to connect
    // otherwise), so it starts like PostgreSQL's and then says what answers.
    let version = format!(
        "PostgreSQL {POSTGRES_VERSION} (Polder {}, Apache DataFusion {}) on {}-{}",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    session.register_udf(
        datafusion::logical_expr::async_udf::AsyncScalarUDF::new(std::sync::Arc::new(PgSleep {
            signature: Signature::numeric(1, Volatility::Volatile),
        }))
        .into_scalar_udf(),
    );
    session.register_udf(Constant::udf(
        "version",
        ScalarValue::Utf8(Some(version)),
        Signature::nullary(Volatility::Immutable),
    ));
    // Polder tables have no serial columns and views answer through the catalog API; these
    // inspection helpers answer NULL, as PostgreSQL does for "none".
    for name in ["pg_get_serial_sequence", "pg_get_viewdef"] {
        session.register_udf(Constant::udf(
            name,
            ScalarValue::Utf8(None),
            Signature::variadic_any(Volatility::Stable),
        ));
    }
    // Everything in Polder's catalog is visible on the search path.
    for name in [
        "pg_collation_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_opclass_is_visible",
    ] {
        session.register_udf(Constant::udf(
            name,
            ScalarValue::Boolean(Some(true)),
            Signature::variadic_any(Volatility::Stable),
        ));
    }
    session.register_udf(ScalarUDF::from(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    }));
    // Type and relation lookups by name (psycopg looks for extension types such as hstore):
    // Polder has no such types, so the answer is NULL, PostgreSQL's "does not exist".
    for name in ["to_regtype", "to_regclass", "to_regproc", "to_regnamespace"] {
        session.register_udf(Constant::udf(
            name,
            ScalarValue::Int32(None),
            Signature::variadic_any(Volatility::Stable),
        ));
    }
}
