//! Label and field selectors: parsing the `labelSelector` / `fieldSelector` query strings
//! and `metav1.LabelSelector` JSON, and matching objects against them.
//!
//! Owns: the selector grammar, its Kubernetes error messages and the table of which
//! fields each resource lets clients select on. Touches nothing else; objects arrive
//! as `serde_json::Value` exactly as clients sent or the store holds them.
//!
//! Semantics follow Kubernetes (apimachinery `labels` and `fields` packages):
//! * `!=` and `notin` match objects that lack the label;
//! * `a in ()` is accepted and means `a in ("")` (Kubernetes' grammar turns `()` into the
//!   set holding the empty string), whereas a `matchExpressions` entry with operator `In`
//!   and no values is refused;
//! * requirements are kept sorted by key, so `Display` prints a canonical form;
//! * field selectors do not trim whitespace (`metadata.name = x` selects on the field
//!   `metadata.name ` and is refused by [`check_field_selector`]), and a field the object
//!   lacks compares as the empty string (booleans as `false`, the Go zero value).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use super::validation::{go_quote, is_label_value, is_qualified_name};

/// A label selector operator, as in Kubernetes' `selection.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operator {
    /// `a=b`
    Equals,
    /// `a==b`
    DoubleEquals,
    /// `a!=b` (also matches objects without `a`)
    NotEquals,
    /// `a in (x,y)`
    In,
    /// `a notin (x,y)` (also matches objects without `a`)
    NotIn,
    /// `a`
    Exists,
    /// `!a`
    DoesNotExist,
    /// `a>5` (integer comparison; objects without `a` do not match)
    GreaterThan,
    /// `a<5`
    LessThan,
}

/// One `key operator values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted and without duplicates (Kubernetes keeps them in a string set).
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement with Kubernetes' checks (`NewRequirement`): a valid key, the
    /// value count the operator needs, valid label values.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errors = Vec::new();
        let key_errors = is_qualified_name(key);
        if !key_errors.is_empty() {
            errors.push(format!(
                "key: Invalid value: {}: {}",
                go_quote(key),
                key_errors.join("; ")
            ));
        }
        let shown_values = go_string_slice(&values);
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errors.push(format!(
                        "values: Invalid value: {shown_values}: for 'in', 'notin' operators, values set can't be empty"
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errors.push(format!(
                        "values: Invalid value: {shown_values}: exact-match compatibility requires one single value"
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errors.push(format!(
                        "values: Invalid value: {shown_values}: values set must be empty for exists and does not exist"
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errors.push(format!(
                        "values: Invalid value: {shown_values}: for 'Gt', 'Lt' operators, exactly one value is required"
                    ));
                }
                for (index, value) in values.iter().enumerate() {
                    if value.parse::<i64>().is_err() {
                        errors.push(format!(
                            "values[{index}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(value)
                        ));
                    }
                }
            }
        }
        for (index, value) in values.iter().enumerate() {
            let value_errors = is_label_value(value);
            if !value_errors.is_empty() {
                errors.push(format!(
                    "values[{index}][{key}]: Invalid value: {}: {}",
                    go_quote(value),
                    value_errors.join("; ")
                ));
            }
        }
        if !errors.is_empty() {
            return Err(aggregate(&errors));
        }
        let values: BTreeSet<String> = values.into_iter().collect();
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values: values.into_iter().collect(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Kubernetes' `Requirement.Matches`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let found = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                found.is_some_and(|value| self.values.contains(value))
            }
            Operator::NotEquals | Operator::NotIn => {
                !found.is_some_and(|value| self.values.contains(value))
            }
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(have)) = found.map(|value| value.parse::<i64>()) else {
                    return false;
                };
                let Some(Ok(want)) = self.values.first().map(|value| value.parse::<i64>()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let operator = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(operator)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A conjunction of requirements. The default value selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Kubernetes' `labels.Nothing()`: what a missing (`null`) `metav1.LabelSelector`
    /// converts to. It matches no object and is not empty.
    selects_nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (an empty `labelSelector`).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no object (a `null` `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            selects_nothing: true,
        }
    }

    /// Builds a selector from requirements, sorted by key like Kubernetes does.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|left, right| left.key.cmp(&right.key));
        LabelSelector {
            requirements,
            selects_nothing: false,
        }
    }

    /// True when the selector does not restrict anything (Kubernetes' `Empty()`).
    pub fn is_empty(&self) -> bool {
        !self.selects_nothing && self.requirements.is_empty()
    }

    /// True when the selector can match nothing at all (`labels.Nothing()`).
    pub fn selects_nothing(&self) -> bool {
        self.selects_nothing
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.selects_nothing
            && self
                .requirements
                .iter()
                .all(|requirement| requirement.matches(labels))
    }

    /// Matches an object's `metadata.labels` (non-string values are ignored).
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(&object_labels(object))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// `metadata.labels` of an object as a map; labels whose value is not a string are
/// skipped (validation refuses them at write time).
pub fn object_labels(object: &Value) -> BTreeMap<String, String> {
    object
        .get("metadata")
        .and_then(|metadata| metadata.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| {
                    value.as_str().map(|text| (key.clone(), text.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Label selector string syntax.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier(String),
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
    /// A run of special symbols that is no operator; the text is the error to report.
    Error(String),
}

impl Token {
    /// The literal Kubernetes prints in "found '...'" messages.
    fn literal(&self) -> String {
        match self {
            Token::EndOfString => String::new(),
            Token::ClosedPar => ")".into(),
            Token::Comma => ",".into(),
            Token::DoesNotExist => "!".into(),
            Token::DoubleEquals => "==".into(),
            Token::Equals => "=".into(),
            Token::GreaterThan => ">".into(),
            Token::Identifier(text) => text.clone(),
            Token::In => "in".into(),
            Token::LessThan => "<".into(),
            Token::NotEquals => "!=".into(),
            Token::NotIn => "notin".into(),
            Token::OpenPar => "(".into(),
            Token::Error(text) => text.clone(),
        }
    }

    fn from_symbol(text: &str) -> Option<Token> {
        Some(match text {
            ")" => Token::ClosedPar,
            "," => Token::Comma,
            "!" => Token::DoesNotExist,
            "==" => Token::DoubleEquals,
            "=" => Token::Equals,
            ">" => Token::GreaterThan,
            "in" => Token::In,
            "<" => Token::LessThan,
            "!=" => Token::NotEquals,
            "notin" => Token::NotIn,
            "(" => Token::OpenPar,
            _ => return None,
        })
    }
}

fn is_selector_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the selector into tokens the way Kubernetes' lexer does: identifiers run until
/// whitespace or a special symbol; special symbols combine greedily into the longest
/// operator.
fn lex(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut position = 0;
    loop {
        while position < bytes.len() && is_selector_whitespace(bytes[position]) {
            position += 1;
        }
        if position >= bytes.len() {
            tokens.push(Token::EndOfString);
            return tokens;
        }
        if is_special_symbol(bytes[position]) {
            let start = position;
            let mut best: Option<(Token, usize)> = None;
            while position < bytes.len() && is_special_symbol(bytes[position]) {
                let candidate = &text[start..=position];
                if let Some(token) = Token::from_symbol(candidate) {
                    best = Some((token, position + 1));
                } else if best.is_some() {
                    break;
                }
                position += 1;
            }
            match best {
                Some((token, end)) => {
                    position = end;
                    tokens.push(token);
                }
                None => {
                    tokens.push(Token::Error(format!(
                        "error expected: keyword found '{}'",
                        &text[start..position]
                    )));
                }
            }
        } else {
            let start = position;
            while position < bytes.len()
                && !is_special_symbol(bytes[position])
                && !is_selector_whitespace(bytes[position])
            {
                position += 1;
            }
            let word = &text[start..position];
            tokens.push(match word {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier(word.to_string()),
            });
        }
    }
}

/// Whether the parser reads operators (`in`, `notin` are keywords) or values (they are
/// plain identifiers, so `a in (in)` works).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn token_at(&self, index: usize, context: Context) -> Token {
        // The lexer always ends with EndOfString and the parser never consumes past it
        // (every branch that consumes checks for it first), but stay total anyway.
        let token = self
            .tokens
            .get(index)
            .cloned()
            .unwrap_or(Token::EndOfString);
        match (context, token) {
            (Context::Values, Token::In) => Token::Identifier("in".into()),
            (Context::Values, Token::NotIn) => Token::Identifier("notin".into()),
            (_, token) => token,
        }
    }

    fn lookahead(&self, context: Context) -> Token {
        self.token_at(self.position, context)
    }

    fn consume(&mut self, context: Context) -> Token {
        let token = self.token_at(self.position, context);
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            match self.lookahead(Context::Values) {
                Token::Identifier(_) | Token::DoesNotExist => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(|error| format!("unable to parse requirement: {error}"))?;
                    requirements.push(requirement);
                    match self.consume(Context::Values) {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let next = self.lookahead(Context::Values);
                            if !matches!(next, Token::Identifier(_) | Token::DoesNotExist) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    next.literal()
                                ));
                            }
                        }
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            ))
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                other => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let mut does_not_exist = false;
        let mut token = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            does_not_exist = true;
            token = self.consume(Context::Values);
        }
        let Token::Identifier(key) = token else {
            return Err(format!("found '{}', expected: identifier", token.literal()));
        };
        let key_errors = is_qualified_name(&key);
        if !key_errors.is_empty() {
            // Kubernetes validates the key against a nil field path here, hence "<nil>".
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&key),
                key_errors.join("; ")
            ));
        }
        if does_not_exist {
            // Kubernetes builds `!key` at once; whatever follows (`!a=b`) is then refused
            // by the caller as "expected: ',' or 'end of string'".
            return Requirement::new(&key, Operator::DoesNotExist, Vec::new());
        }
        let next = self.lookahead(Context::Values);
        if next == Token::EndOfString || next == Token::Comma {
            return Requirement::new(&key, Operator::Exists, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, operator, values.into_iter().collect())
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        Ok(match self.consume(Context::KeyAndOperator) {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            other => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    other.literal()
                ))
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let token = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", token.literal()));
        }
        let next = self.lookahead(Context::Values);
        match next {
            Token::Identifier(_) | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values) != Token::ClosedPar {
                    return Err(format!("found '{}', expected: ')'", next.literal()));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            other => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                other.literal()
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            match self.consume(Context::Values) {
                Token::Identifier(value) => {
                    values.insert(value);
                    match self.lookahead(Context::Values) {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or ')'",
                                other.literal()
                            ))
                        }
                    }
                }
                Token::Comma => {
                    // `(,a)`, `(a,)` and `(a,,b)` each stand for an empty value.
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    match self.lookahead(Context::Values) {
                        Token::ClosedPar => {
                            values.insert(String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            values.insert(String::new());
                        }
                        _ => {}
                    }
                }
                other => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        other.literal()
                    ))
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        match self.lookahead(Context::Values) {
            Token::EndOfString | Token::Comma => return Ok(BTreeSet::from([String::new()])),
            _ => {}
        }
        match self.consume(Context::Values) {
            Token::Identifier(value) => Ok(BTreeSet::from([value])),
            other => Err(format!("found '{}', expected: identifier", other.literal())),
        }
    }
}

/// Parses the `labelSelector` query syntax (`a=b,c!=d,e in (f,g),!h`). An empty or
/// all-whitespace string selects everything.
pub fn parse_label_selector(text: &str) -> Result<LabelSelector, String> {
    let mut parser = Parser {
        tokens: lex(text),
        position: 0,
    };
    // A lexer error token surfaces through the parser's "found '...'" messages, like in
    // Kubernetes where its literal is the error text.
    let requirements = parser.parse()?;
    Ok(LabelSelector::from_requirements(requirements))
}

/// Converts a `metav1.LabelSelector` (`{"matchLabels":{..},"matchExpressions":[..]}`)
/// like Kubernetes' `LabelSelectorAsSelector`: `null` selects nothing, `{}` everything.
pub fn label_selector_from_json(value: &Value) -> Result<LabelSelector, String> {
    let object = match value {
        Value::Null => return Ok(LabelSelector::nothing()),
        Value::Object(object) => object,
        other => {
            return Err(format!(
                "a label selector must be an object, found {}",
                json_kind(other)
            ))
        }
    };
    let mut requirements = Vec::new();
    match object.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                let Some(value) = value.as_str() else {
                    return Err(format!(
                        "matchLabels[{key}]: the value must be a string, found {}",
                        json_kind(value)
                    ));
                };
                requirements.push(Requirement::new(
                    key,
                    Operator::Equals,
                    vec![value.to_string()],
                )?);
            }
        }
        Some(other) => {
            return Err(format!(
                "matchLabels must be an object, found {}",
                json_kind(other)
            ))
        }
    }
    match object.get("matchExpressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(expressions)) => {
            for (index, expression) in expressions.iter().enumerate() {
                let Some(expression) = expression.as_object() else {
                    return Err(format!(
                        "matchExpressions[{index}] must be an object, found {}",
                        json_kind(expression)
                    ));
                };
                let key = match expression.get("key") {
                    Some(Value::String(key)) => key.as_str(),
                    None | Some(Value::Null) => "",
                    Some(other) => {
                        return Err(format!(
                            "matchExpressions[{index}].key must be a string, found {}",
                            json_kind(other)
                        ))
                    }
                };
                let operator_text = match expression.get("operator") {
                    Some(Value::String(operator)) => operator.as_str(),
                    None | Some(Value::Null) => "",
                    Some(other) => {
                        return Err(format!(
                            "matchExpressions[{index}].operator must be a string, found {}",
                            json_kind(other)
                        ))
                    }
                };
                let operator = match operator_text {
                    "In" => Operator::In,
                    "NotIn" => Operator::NotIn,
                    "Exists" => Operator::Exists,
                    "DoesNotExist" => Operator::DoesNotExist,
                    other => {
                        return Err(format!(
                            "{} is not a valid label selector operator",
                            go_quote(other)
                        ))
                    }
                };
                let mut values = Vec::new();
                match expression.get("values") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(items)) => {
                        for item in items {
                            let Some(text) = item.as_str() else {
                                return Err(format!(
                                    "matchExpressions[{index}].values must hold strings, found {}",
                                    json_kind(item)
                                ));
                            };
                            values.push(text.to_string());
                        }
                    }
                    Some(other) => {
                        return Err(format!(
                            "matchExpressions[{index}].values must be an array, found {}",
                            json_kind(other)
                        ))
                    }
                }
                requirements.push(Requirement::new(key, operator, values)?);
            }
        }
        Some(other) => {
            return Err(format!(
                "matchExpressions must be an array, found {}",
                json_kind(other)
            ))
        }
    }
    Ok(LabelSelector::from_requirements(requirements))
}

// ---------------------------------------------------------------------------------------
// Field selectors.

/// One `field=value` or `field!=value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    /// True for `!=`.
    pub negated: bool,
    /// The unescaped value.
    pub value: String,
}

/// A conjunction of field terms. The default value selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value a term on `field` requires with `=`/`==`, if any (useful to narrow a
    /// list to one name or one node before matching).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|requirement| requirement.field == field && !requirement.negated)
            .map(|requirement| requirement.value.as_str())
    }

    /// Matches an object; a field the object lacks compares as the empty string (or
    /// `false` for boolean fields), like Kubernetes' field sets.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|requirement| {
            let actual = field_value(object, &requirement.field);
            (actual == requirement.value) != requirement.negated
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            let operator = if requirement.negated { "!=" } else { "=" };
            write!(
                f,
                "{}{operator}{}",
                requirement.field,
                escape_field_value(&requirement.value)
            )?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a field selector value (Kubernetes' `EscapeValue`).
pub fn escape_field_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if matches!(character, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn unescape_field_value(value: &str) -> Result<String, String> {
    let mut unescaped = String::with_capacity(value.len());
    let mut after_backslash = false;
    for character in value.chars() {
        if after_backslash {
            match character {
                '\\' | ',' | '=' => unescaped.push(character),
                other => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    ))
                }
            }
            after_backslash = false;
            continue;
        }
        match character {
            '\\' => after_backslash = true,
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character {character}"
                ))
            }
            other => unescaped.push(other),
        }
    }
    if after_backslash {
        return Err("invalid field selector: invalid escape sequence: \\".into());
    }
    Ok(unescaped)
}

/// Splits on commas that no backslash escapes.
fn split_field_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut after_backslash = false;
    for (index, character) in text.char_indices() {
        if after_backslash {
            after_backslash = false;
        } else if character == '\\' {
            after_backslash = true;
        } else if character == ',' {
            terms.push(&text[start..index]);
            start = index + 1;
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Parses the `fieldSelector` query syntax (`key=value`, `key==value`, `key!=value`,
/// comma-separated; `\`, `,` and `=` in values escaped with a backslash).
pub fn parse_field_selector(text: &str) -> Result<FieldSelector, String> {
    let mut terms = split_field_terms(text);
    // Kubernetes sorts the terms, so the canonical form does not depend on their order.
    terms.sort_unstable();
    let mut requirements = Vec::new();
    for term in terms {
        if term.is_empty() {
            continue;
        }
        let split = term.char_indices().find_map(|(index, _)| {
            let rest = &term[index..];
            ["!=", "==", "="]
                .iter()
                .find(|operator| rest.starts_with(**operator))
                .map(|operator| (index, *operator))
        });
        let Some((index, operator)) = split else {
            return Err(format!(
                "invalid selector: '{text}'; can't understand '{term}'"
            ));
        };
        let field = &term[..index];
        let value = unescape_field_value(&term[index + operator.len()..])?;
        requirements.push(FieldRequirement {
            field: field.to_string(),
            negated: operator == "!=",
            value,
        });
    }
    Ok(FieldSelector { requirements })
}

/// The fields a resource (plural, lowercase: "pods", "events") can be selected on,
/// beyond `metadata.name` and `metadata.namespace` which every resource supports.
pub fn selectable_fields(resource: &str) -> &'static [&'static str] {
    match resource {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "nodes" => &["spec.unschedulable"],
        "secrets" => &["type"],
        "namespaces" => &["status.phase"],
        "replicasets" | "replicationcontrollers" => &["status.replicas"],
        "jobs" => &["status.successful"],
        _ => &[],
    }
}

/// Refuses a field selector naming a field the resource does not support, with
/// Kubernetes' message (`field label not supported: spec.foo`).
pub fn check_field_selector(resource: &str, selector: &FieldSelector) -> Result<(), String> {
    for requirement in &selector.requirements {
        let field = requirement.field.as_str();
        let supported = field == "metadata.name"
            || field == "metadata.namespace"
            || selectable_fields(resource).contains(&field);
        if !supported {
            return Err(format!("field label not supported: {field}"));
        }
    }
    Ok(())
}

/// The string a field selector compares against, extracted the way Kubernetes builds
/// its per-resource field sets.
fn field_value(object: &Value, field: &str) -> String {
    match field {
        // Events: `source` is the reporting component, falling back to the newer field.
        "source" => {
            let component = object
                .pointer("/source/component")
                .and_then(Value::as_str)
                .unwrap_or("");
            if component.is_empty() {
                return object
                    .get("reportingController")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
            }
            component.to_string()
        }
        "reportingComponent" => object
            .get("reportingController")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        // Go booleans and integers have zero values, so a missing one reads as such.
        "spec.unschedulable" | "spec.hostNetwork" => match lookup_path(object, field) {
            Some(Value::Bool(true)) => "true".into(),
            Some(Value::Bool(false)) | None | Some(Value::Null) => "false".into(),
            Some(other) => scalar_text(other),
        },
        "status.replicas" | "status.successful" => match lookup_path(object, field) {
            None | Some(Value::Null) => "0".into(),
            Some(other) => scalar_text(other),
        },
        _ => lookup_path(object, field)
            .map(scalar_text)
            .unwrap_or_default(),
    }
}

fn lookup_path<'a>(object: &'a Value, field: &str) -> Option<&'a Value> {
    let mut current = object;
    for part in field.split('.') {
        current = current.get(part)?;
    }
    Some(current)
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        // Selecting on a structured field never matches a textual value.
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `%#v` of a `[]string`, as Kubernetes prints bad selector values.
fn go_string_slice(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|value| go_quote(value)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Kubernetes' error aggregate: one message alone, several in brackets.
fn aggregate(messages: &[String]) -> String {
    if messages.len() == 1 {
        return messages[0].clone();
    }
    format!("[{}]", messages.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    // Proves the string grammar parses every operator and prints Kubernetes' canonical form.
    #[test]
    fn label_selector_parses_to_canonical_form() {
        let table: &[(&str, &str)] = &[
            ("", ""),
            ("   ", ""),
            ("a=b", "a=b"),
            ("a==b", "a==b"),
            ("a!=b", "a!=b"),
            ("a in (y,x)", "a in (x,y)"),
            ("a notin (x)", "a notin (x)"),
            ("a", "a"),
            ("!a", "!a"),
            ("b=1,a=2", "a=2,b=1"),
            ("  a = b ,  c  in ( x , y ) , ! d ", "a=b,c in (x,y),!d"),
            ("a=", "a="),
            ("a in (in,notin)", "a in (in,notin)"),
            (
                "x in (foo,,baz),y,z notin ()",
                "x in (,baz,foo),y,z notin ()",
            ),
            ("a in (x,)", "a in (,x)"),
            ("a>5", "a>5"),
            ("a<5", "a<5"),
            ("example.com/app=web", "example.com/app=web"),
            ("a in (x,x)", "a in (x)"),
        ];
        for (input, canonical) in table {
            let selector = parse_label_selector(input)
                .unwrap_or_else(|error| panic!("{input:?} failed: {error}"));
            assert_eq!(selector.to_string(), *canonical, "input {input:?}");
        }
    }

    // Proves malformed selectors are refused with Kubernetes' messages.
    #[test]
    fn label_selector_errors_carry_kubernetes_messages() {
        let table: &[(&str, &str)] = &[
            ("a in", "unable to parse requirement: found '' expected: '('"),
            ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("a in x", "unable to parse requirement: found 'x' expected: '('"),
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("a=b,", "found '', expected: identifier after ','"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            (",a", "found ',', expected: !, identifier, or 'end of string'"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("a=(", "unable to parse requirement: found '(', expected: identifier"),
            ("a>x", "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"),
            (
                "a$=b",
                "unable to parse requirement: <nil>: Invalid value: \"a$\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
            (
                "a=b$",
                "unable to parse requirement: values[0][a]: Invalid value: \"b$\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
            ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            ("!", "unable to parse requirement: found '', expected: identifier"),
        ];
        for (input, message) in table {
            let error = parse_label_selector(input).expect_err(input);
            assert_eq!(error, *message, "input {input:?}");
        }
    }

    // Proves matching follows Kubernetes, including != and notin matching a missing label.
    #[test]
    fn label_selector_matching_table() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("n", "7")]);
        let bare = labels(&[]);
        let table: &[(&str, bool, bool)] = &[
            // (selector, matches web, matches an object without labels)
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app=db", false, false),
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("app in (web,db)", true, false),
            ("app notin (web)", false, true),
            ("app notin (db)", true, true),
            ("app", true, false),
            ("!app", false, true),
            ("missing", false, false),
            ("!missing", true, true),
            ("app=web,tier=front", true, false),
            ("app=web,tier=back", false, false),
            ("n>5", true, false),
            ("n<5", false, false),
            ("app>5", false, false),
            ("app in ()", false, false),
            ("app notin ()", true, true),
            ("missing=", false, false),
        ];
        for (input, web_matches, bare_matches) in table {
            let selector = parse_label_selector(input).expect(input);
            assert_eq!(selector.matches(&web), *web_matches, "{input:?} on web");
            assert_eq!(selector.matches(&bare), *bare_matches, "{input:?} on bare");
        }
        let empty_value = labels(&[("app", "")]);
        assert!(parse_label_selector("app in ()")
            .expect("parses")
            .matches(&empty_value));
        assert!(parse_label_selector("app=")
            .expect("parses")
            .matches(&empty_value));
    }

    // Proves metav1.LabelSelector JSON converts like LabelSelectorAsSelector, errors included.
    #[test]
    fn label_selector_from_json_table() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let ok: &[(Value, &str, bool)] = &[
            (json!({}), "", true),
            (json!({"matchLabels": {"app": "web"}}), "app=web", true),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["front", "back"]},
                    {"key": "gone", "operator": "DoesNotExist"}
                ]}),
                "app=web,!gone,tier in (back,front)",
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
                "tier notin (front)",
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
                "app",
                true,
            ),
        ];
        for (value, canonical, matches) in ok {
            let selector = label_selector_from_json(value).expect("valid selector");
            assert_eq!(selector.to_string(), *canonical);
            assert_eq!(selector.matches(&web), *matches, "{value}");
        }
        let nothing = label_selector_from_json(&Value::Null).expect("null is valid");
        assert!(!nothing.is_empty() && !nothing.matches(&web) && !nothing.matches(&labels(&[])));
        assert!(label_selector_from_json(&json!({}))
            .expect("valid")
            .is_empty());

        let errors: &[(Value, &str)] = &[
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
                "\"Gt\" is not a valid label selector operator",
            ),
            (
                json!({"matchLabels": {"app": 3}}),
                "matchLabels[app]: the value must be a string, found number",
            ),
            (json!("app=web"), "a label selector must be an object, found string"),
            (
                json!({"matchExpressions": {"key": "a"}}),
                "matchExpressions must be an array, found object",
            ),
        ];
        for (value, message) in errors {
            assert_eq!(
                label_selector_from_json(value).expect_err("invalid"),
                *message
            );
        }
    }

    // Proves field selectors parse (escapes included) and refuse what Kubernetes refuses.
    #[test]
    fn field_selector_parse_table() {
        let ok: &[(&str, &str)] = &[
            ("", ""),
            ("metadata.name=web", "metadata.name=web"),
            ("metadata.name==web", "metadata.name=web"),
            ("status.phase!=Running", "status.phase!=Running"),
            (
                "spec.nodeName=n1,metadata.namespace=default",
                "metadata.namespace=default,spec.nodeName=n1",
            ),
            ("metadata.name=a\\,b", "metadata.name=a\\,b"),
            ("metadata.name=", "metadata.name="),
            ("a=b,,c=d", "a=b,c=d"),
        ];
        for (input, canonical) in ok {
            let selector =
                parse_field_selector(input).unwrap_or_else(|error| panic!("{input:?}: {error}"));
            assert_eq!(selector.to_string(), *canonical);
        }
        let escaped = parse_field_selector("metadata.name=a\\,b\\=c\\\\d").expect("valid");
        assert_eq!(escaped.requirements()[0].value, "a,b=c\\d");
        let errors: &[(&str, &str)] = &[
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            ("a=b=c", "invalid field selector: unescaped character ="),
            (
                "a=b\\x",
                "invalid field selector: invalid escape sequence: \\x",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
        ];
        for (input, message) in errors {
            assert_eq!(parse_field_selector(input).expect_err(input), *message);
        }
    }

    // Proves field matching reads the right fields, with missing ones as "" (or false).
    #[test]
    fn field_selector_matching_table() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-a", "schedulerName": "default-scheduler"},
            "status": {"phase": "Running", "podIP": "10.0.0.5"}
        });
        let pending = json!({"metadata": {"name": "web-2", "namespace": "default"}, "spec": {}});
        let event = json!({
            "metadata": {"name": "web-1.17", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u-1"},
            "reason": "Scheduled", "type": "Normal",
            "source": {"component": "default-scheduler"}
        });
        let node = json!({"metadata": {"name": "node-a"}, "spec": {}});
        let table: &[(&str, &Value, bool)] = &[
            ("metadata.name=web-1", &pod, true),
            ("metadata.name=web-2", &pod, false),
            ("metadata.name!=web-2", &pod, true),
            ("spec.nodeName=node-a", &pod, true),
            ("spec.nodeName=", &pending, true),
            ("spec.nodeName!=", &pending, false),
            ("spec.nodeName!=", &pod, true),
            ("status.phase=Running,spec.nodeName=node-a", &pod, true),
            ("status.phase=Running", &pending, false),
            ("status.podIP=10.0.0.5", &pod, true),
            (
                "involvedObject.kind=Pod,involvedObject.name=web-1",
                &event,
                true,
            ),
            ("involvedObject.uid=u-1", &event, true),
            ("source=default-scheduler", &event, true),
            ("reason=Killing", &event, false),
            ("spec.unschedulable=false", &node, true),
            ("spec.unschedulable=true", &node, false),
            ("metadata.namespace=", &node, true),
        ];
        for (input, object, expected) in table {
            let selector = parse_field_selector(input).expect(input);
            assert_eq!(selector.matches(object), *expected, "{input:?}");
        }
        let selector = parse_field_selector("metadata.name=web-1").expect("valid");
        assert_eq!(
            selector.requires_exact_match("metadata.name"),
            Some("web-1")
        );
    }

    // Proves the per-resource field table refuses unsupported fields with Kubernetes' message.
    #[test]
    fn check_field_selector_table() {
        let table: &[(&str, &str, Result<(), &str>)] = &[
            ("pods", "spec.nodeName=a,status.phase=Running", Ok(())),
            ("pods", "metadata.name=a", Ok(())),
            (
                "pods",
                "spec.foo=a",
                Err("field label not supported: spec.foo"),
            ),
            (
                "events",
                "involvedObject.name=a,involvedObject.kind=Pod,reason=x,source=y,type=Normal",
                Ok(()),
            ),
            (
                "events",
                "spec.nodeName=a",
                Err("field label not supported: spec.nodeName"),
            ),
            ("nodes", "spec.unschedulable=false", Ok(())),
            ("secrets", "type=Opaque", Ok(())),
            ("namespaces", "status.phase=Active", Ok(())),
            ("deployments", "metadata.namespace=default", Ok(())),
            (
                "deployments",
                "spec.replicas=1",
                Err("field label not supported: spec.replicas"),
            ),
            (
                "configmaps",
                "metadata.name =a",
                Err("field label not supported: metadata.name "),
            ),
        ];
        for (resource, input, expected) in table {
            let selector = parse_field_selector(input).expect(input);
            let outcome = check_field_selector(resource, &selector);
            assert_eq!(
                outcome,
                expected.map_err(str::to_string),
                "{resource} {input}"
            );
        }
    }

    // Proves matches_object reads metadata.labels and tolerates objects without them.
    #[test]
    fn label_selector_matches_objects() {
        let selector = parse_label_selector("app=web,env!=prod").expect("valid");
        assert!(selector.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!selector
            .matches_object(&json!({"metadata": {"labels": {"app": "web", "env": "prod"}}})));
        assert!(!selector.matches_object(&json!({"metadata": {}})));
        assert!(!selector.matches_object(&json!("not an object")));
        assert!(LabelSelector::everything().matches_object(&json!(null)));
    }
}
