//! Functions PostgreSQL clients call when they connect or inspect a database, which neither
//! DataFusion nor `datafusion-postgres` provide in the form clients expect.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;

/// The PostgreSQL version Polder's wire protocol speaks (the one pgwire announces).
pub const POSTGRES_VERSION: &str = "16.6";

/// A function returning a constant text value, or NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConstantText {
    name: &'static str,
    value: Option<String>,
    signature: Signature,
}

impl ConstantText {
    fn new(name: &'static str, value: Option<String>, signature: Signature) -> ScalarUDF {
        ScalarUDF::from(ConstantText { name, value, signature })
    }
}

impl ScalarUDFImpl for ConstantText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(self.value.clone())))
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
    session.register_udf(ConstantText::new("version", Some(version), Signature::nullary(Volatility::Immutable)));
    // Polder tables have no serial columns and views answer through the catalog API; these
    // inspection helpers answer NULL, as PostgreSQL does for "none".
    for name in ["pg_get_serial_sequence", "pg_get_viewdef"] {
        session.register_udf(ConstantText::new(name, None, Signature::variadic_any(Volatility::Stable)));
    }
}
