//! Query strings read by hand rather than by a typed extractor, so that every fault is a 422
//! naming its parameter: an unknown one (`?statut=failed` would otherwise be ignored,
//! silently), one given twice.

use std::collections::HashMap;

use super::error::{ApiError, FieldError};

/// A query's parameters, each once, each one `allowed`: anything else is a 422 naming it.
pub(super) fn params(
    raw: Option<&str>,
    route: &str,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let mut found = HashMap::new();
    let mut errors = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !allowed.contains(&name.as_ref()) {
            errors.push(FieldError::new(
                name.as_ref(),
                format!("not a parameter of {route} ({})", allowed.join(", ")),
            ));
        } else if found
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            errors.push(FieldError::new(name.as_ref(), "given more than once"));
        }
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(ApiError::InvalidQuery(errors))
    }
}
