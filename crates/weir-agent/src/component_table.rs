//! Reading a component's TOML table (`[sources.NAME]`, `[flushers.NAME]`) into its
//! config struct, with errors a user can act on.

/// Reads `table` into `T`; the error is serde's message, which names an unknown or
/// mistyped key.
pub(crate) fn read<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
}

/// The error for a `type = "…"` that names no known component: it lists the ones there
/// are.
pub(crate) fn unknown_type(component: &str, kind: &str, types: &[&str]) -> String {
    format!(
        "unknown {component} type {kind:?}; one of {}",
        types.join(", ")
    )
}
