//! Reading JSON with type checks: every accessor returns `None` for a missing or `null`
//! field and records a cause when the field has the wrong JSON type.

#[allow(unused_imports)]
use super::*;

pub(super) struct Checker {
    pub(super) causes: Vec<Cause>,
}

impl Checker {
    pub(super) fn new() -> Checker {
        Checker { causes: Vec::new() }
    }

    pub(super) fn push(&mut self, cause: Cause) {
        self.causes.push(cause);
    }

    pub(super) fn get<'a>(parent: &'a Value, name: &str) -> Option<&'a Value> {
        match parent.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(value),
        }
    }

    pub(super) fn object<'a>(
        &mut self,
        parent: &'a Value,
        name: &str,
        path: &str,
    ) -> Option<&'a Map<String, Value>> {
        let value = Self::get(parent, name)?;
        match value.as_object() {
            Some(object) => Some(object),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "object",
                ));
                None
            }
        }
    }

    pub(super) fn array<'a>(
        &mut self,
        parent: &'a Value,
        name: &str,
        path: &str,
    ) -> Option<&'a Vec<Value>> {
        let value = Self::get(parent, name)?;
        match value.as_array() {
            Some(items) => Some(items),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "array",
                ));
                None
            }
        }
    }

    pub(super) fn string<'a>(
        &mut self,
        parent: &'a Value,
        name: &str,
        path: &str,
    ) -> Option<&'a str> {
        let value = Self::get(parent, name)?;
        match value.as_str() {
            Some(text) => Some(text),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "string",
                ));
                None
            }
        }
    }

    pub(super) fn integer(&mut self, parent: &Value, name: &str, path: &str) -> Option<i64> {
        let value = Self::get(parent, name)?;
        match value.as_i64() {
            Some(number) => Some(number),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "integer",
                ));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, parent: &Value, name: &str, path: &str) -> Option<bool> {
        let value = Self::get(parent, name)?;
        match value.as_bool() {
            Some(flag) => Some(flag),
            None => {
                self.push(Cause::type_invalid(
                    &child(path, name),
                    &show_value(value),
                    "boolean",
                ));
                None
            }
        }
    }

    /// An array element that must be an object; records a cause otherwise.
    pub(super) fn element<'a>(&mut self, item: &'a Value, path: &str) -> Option<&'a Value> {
        if item.is_object() {
            Some(item)
        } else {
            self.push(Cause::type_invalid(path, &show_value(item), "object"));
            None
        }
    }

    /// `ValidateNonnegativeField`.
    pub(super) fn non_negative(&mut self, parent: &Value, name: &str, path: &str) -> Option<i64> {
        let value = self.integer(parent, name, path)?;
        if value < 0 {
            self.push(Cause::invalid(
                &child(path, name),
                &value.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        Some(value)
    }

    /// A map of strings (labels, annotations, selectors, data): values of another JSON
    /// type are recorded and skipped.
    pub(super) fn string_map(
        &mut self,
        parent: &Value,
        name: &str,
        path: &str,
    ) -> Option<BTreeMap<String, String>> {
        let map = self.object(parent, name, path)?;
        let field = child(path, name);
        let mut result = BTreeMap::new();
        for (entry_key, entry_value) in map {
            match entry_value.as_str() {
                Some(text) => {
                    result.insert(entry_key.clone(), text.to_string());
                }
                None => self.push(Cause::type_invalid(
                    &key(&field, entry_key),
                    &show_value(entry_value),
                    "string",
                )),
            }
        }
        Some(result)
    }
}

pub(super) static EMPTY_OBJECT: Value = Value::Null;

/// The object at `name`, or JSON `null` (which reads as an empty object) when absent or
/// of the wrong type (the type error is recorded).
pub(super) fn object_or_empty<'a>(
    checker: &mut Checker,
    parent: &'a Value,
    name: &str,
    path: &str,
) -> &'a Value {
    match checker.object(parent, name, path) {
        Some(_) => parent.get(name).unwrap_or(&EMPTY_OBJECT),
        None => &EMPTY_OBJECT,
    }
}
