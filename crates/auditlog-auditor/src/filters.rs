//! The event filters: the one definition of the filters, order and page every event
//! query takes, by their query-string names. The query routes read it
//! ([`EventFilters::from_params`], then [`EventFilters::to_query`] for the store's
//! [`EventQuery`]), the OpenAPI documents describe it (its `IntoParams` derive: a
//! field's doc comment is the parameter's description), and the command line sends
//! it (`auditlog query` and `auditlog export` serialise one). A filter added here is
//! parsed, documented and sent by all three.
//!
//! The values stay text until [`EventFilters::to_query`] reads them, so that each
//! malformed one is refused with a sentence naming its parameter.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use auditlog_event::{Action, MAX_ID_CHARS};
use auditlog_http::ApiError;
use auditlog_store::{Cursor, EventQuery, ObjectKey, Order};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::openapi::{action_schema, millis_schema, object_type_schema, string_schema};
use crate::query::object_key;

/// A query string's parameters, decoded as the routes decode them.
pub type QueryParams = BTreeMap<String, String>;

/// Refuses any parameter of `params` that is not in `known`, for the routes that
/// take a few fixed parameters rather than [`EventFilters`].
pub(crate) fn only_known(params: &QueryParams, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|key| !known.contains(&key.as_str())) {
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown query parameter `{other}`; known: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The filters, order and page of an event query. Every filter present must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct EventFilters {
    /// Only events of this tenant (operators, who read every tenant; anyone
    /// else reads only their own, which this may name)
    #[serde(rename = "filter[tenantId]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub tenant_id: Option<TenantText>,
    /// Only events by actors of this type; goes with `filter[actorId]`
    #[serde(rename = "filter[actorType]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub actor_type: Option<ObjectTypeText>,
    /// Only events by the actor with this id; goes with `filter[actorType]`
    #[serde(rename = "filter[actorId]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub actor_id: Option<ObjectIdText>,
    /// Only events on targets of this type; goes with `filter[targetId]`
    #[serde(rename = "filter[targetType]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub target_type: Option<ObjectTypeText>,
    /// Only events on the target with this id; goes with `filter[targetType]`
    #[serde(rename = "filter[targetId]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub target_id: Option<ObjectIdText>,
    /// Only these actions, comma-separated (`changed,deleted`)
    #[serde(rename = "filter[action]", skip_serializing_if = "Option::is_none")]
    #[param(inline, style = Form, explode = false)]
    pub action: Option<ActionList>,
    /// Only events with one of these names, comma-separated
    #[serde(rename = "filter[eventName]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub event_name: Option<AnyText>,
    /// Only events at or after this time
    #[serde(rename = "filter[since]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub since: Option<EpochMillis>,
    /// Only events before this time
    #[serde(rename = "filter[until]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub until: Option<EpochMillis>,
    /// `-timestamp` (newest first, the default) or `timestamp` (oldest first)
    #[serde(rename = "sort", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub sort: Option<SortOrder>,
    /// Events per page (default 50)
    #[serde(rename = "page[size]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub page_size: Option<PageSize>,
    /// The opaque cursor of the next page; take it from `links.next`
    #[serde(rename = "page[after]", skip_serializing_if = "Option::is_none")]
    #[param(inline)]
    pub page_after: Option<PageCursor>,
}

/// Declares the text of one kind of parameter: its value as it was sent (read by
/// [`EventFilters::to_query`], which names the parameter when it is malformed),
/// documented with `$schema`.
macro_rules! param_text {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The value as it was sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T($schema)
            }
        }

        impl ToSchema for $name {}
    };
}

param_text!(
    /// An object type, e.g. `users`.
    ObjectTypeText => object_type_schema("An object type")
);
param_text!(
    /// A tenant id.
    TenantText => ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(auditlog_event::MAX_TENANT_CHARS))
        .pattern(Some("^[A-Za-z0-9._-]+$"))
        .into()
);
param_text!(
    /// An object id.
    ObjectIdText => string_schema(1, MAX_ID_CHARS, "An object id")
);
param_text!(
    /// Actions, comma-separated.
    ActionList => ArrayBuilder::new()
        .items(RefOr::T(action_schema()))
        .min_items(Some(1))
        .into()
);
param_text!(
    /// Any text.
    AnyText => ObjectBuilder::new().schema_type(Type::String).into()
);
param_text!(
    /// Milliseconds since the Unix epoch.
    EpochMillis => millis_schema("Milliseconds since the Unix epoch")
);
param_text!(
    /// `-timestamp` or `timestamp`.
    SortOrder => ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["-timestamp", "timestamp"]))
        .into()
);
param_text!(
    /// Events per page.
    PageSize => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(EventQuery::MAX_PAGE_SIZE))
        .into()
);
param_text!(
    /// A cursor this server gave out.
    PageCursor => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[0-9a-f]{1,16}\\.[0-9a-f]{32}(\\.a)?$"))
        .into()
);

/// The parameters' names, as the derive spells them.
static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    EventFilters::into_params(|| None)
        .into_iter()
        .map(|param| param.name)
        .collect()
});

impl EventFilters {
    /// The query-string names of the filters, in their documented order.
    pub fn names() -> &'static [String] {
        &NAMES
    }

    /// Takes the filters out of a route's parameters. Unknown parameters are refused
    /// so that a typo is not silently ignored; the keys in `route_keys` belong to
    /// the route and are left to it.
    pub fn from_params(params: &QueryParams, route_keys: &[&str]) -> Result<Self, ApiError> {
        let names = Self::names();
        let mut filters = serde_json::Map::new();
        for (key, value) in params {
            if route_keys.contains(&key.as_str()) {
                continue;
            }
            if !names.iter().any(|name| name == key) {
                let known: Vec<&str> = names
                    .iter()
                    .map(String::as_str)
                    .chain(route_keys.iter().copied())
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{key}`; known: {}",
                    known.join(", ")
                )));
            }
            filters.insert(key.clone(), serde_json::Value::String(value.clone()));
        }
        // Every field is optional text, so only a key the struct lacks could fail,
        // and those were refused above.
        serde_json::from_value(serde_json::Value::Object(filters))
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// The store's query these filters ask for (before authorisation), or the 400
    /// that names the first malformed one.
    pub fn to_query(&self) -> Result<EventQuery, ApiError> {
        let mut query = EventQuery::default();
        if let Some(tenant) = &self.tenant_id {
            query.tenant = Some(
                auditlog_event::parse_tenant("filter[tenantId]", tenant.as_str())
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            );
        }
        if let Some(actions) = &self.action {
            query.actions = actions
                .as_str()
                .split(',')
                .map(|a| Action::parse(a.trim()))
                .collect::<Result<_, _>>()
                .map_err(|e| ApiError::bad_request(format!("filter[action]: {e}")))?;
        }
        if let Some(names) = &self.event_name {
            query.event_names = names
                .as_str()
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(sort) = &self.sort {
            query.order = match sort.as_str() {
                "-timestamp" => Order::NewestFirst,
                "timestamp" => Order::OldestFirst,
                _ => {
                    return Err(ApiError::bad_request(
                        "sort must be -timestamp (newest first) or timestamp (oldest first)",
                    ));
                }
            };
        }
        if let Some(since) = &self.since {
            query.since = Some(millis("filter[since]", since.as_str())?);
        }
        if let Some(until) = &self.until {
            query.until = Some(millis("filter[until]", until.as_str())?);
        }
        if let Some(size) = &self.page_size {
            query.page_size = size
                .as_str()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=EventQuery::MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "page[size] must be a whole number from 1 to {}",
                        EventQuery::MAX_PAGE_SIZE
                    ))
                })?;
        }
        if let Some(after) = &self.page_after {
            query.after = Some(Cursor::decode(after.as_str()).ok_or_else(|| {
                ApiError::bad_request(
                    "page[after] is not a cursor this server gave out; use links.next",
                )
            })?);
        }
        if query.after.is_some_and(|after| after.order != query.order) {
            return Err(ApiError::bad_request(
                "page[after] was given out for the other sort order; start again without it",
            ));
        }
        query.actor = pair(("actorType", "actorId"), &self.actor_type, &self.actor_id)?;
        query.target = pair(
            ("targetType", "targetId"),
            &self.target_type,
            &self.target_id,
        )?;
        Ok(query)
    }
}

/// An object filter: both of its parameters, or neither.
fn pair(
    (type_field, id_field): (&'static str, &'static str),
    object_type: &Option<ObjectTypeText>,
    id: &Option<ObjectIdText>,
) -> Result<Option<ObjectKey>, ApiError> {
    match (object_type, id) {
        (None, None) => Ok(None),
        (Some(t), Some(i)) => {
            object_key(type_field, id_field, t.as_str().into(), i.as_str().into()).map(Some)
        }
        _ => Err(ApiError::bad_request(format!(
            "filter[{type_field}] and filter[{id_field}] go together"
        ))),
    }
}

/// A time parameter: milliseconds since the Unix epoch.
pub(crate) fn millis(key: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("{key} must be milliseconds since the Unix epoch"))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_names_are_the_query_string_names() {
        assert_eq!(
            EventFilters::names(),
            [
                "filter[tenantId]",
                "filter[actorType]",
                "filter[actorId]",
                "filter[targetType]",
                "filter[targetId]",
                "filter[action]",
                "filter[eventName]",
                "filter[since]",
                "filter[until]",
                "sort",
                "page[size]",
                "page[after]",
            ]
        );
    }

    #[test]
    fn filters_serialise_to_the_names_they_are_parsed_from() {
        let filters = EventFilters {
            actor_type: Some(ObjectTypeText("users".into())),
            actor_id: Some(ObjectIdText("1".into())),
            action: Some(ActionList("changed,deleted".into())),
            since: Some(EpochMillis("5".into())),
            ..EventFilters::default()
        };

        let text = serde_urlencoded::to_string(&filters).unwrap();
        let params: QueryParams = serde_urlencoded::from_str(&text).unwrap();

        assert_eq!(EventFilters::from_params(&params, &[]).unwrap(), filters);
    }

    #[test]
    fn an_unknown_parameter_is_refused_naming_every_known_one() {
        let params: QueryParams = [("filter[actor]".to_owned(), "1".to_owned())].into();

        let err = EventFilters::from_params(&params, &["count"]).unwrap_err();

        assert!(err.detail.contains("`filter[actor]`"), "{}", err.detail);
        assert!(err.detail.ends_with("page[after], count"), "{}", err.detail);
    }
}
