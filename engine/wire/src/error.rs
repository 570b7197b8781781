//! Decode errors.
//!
//! A [`DecodeError`] is a small `Copy` value: it is produced on the per-frame path, so it holds
//! no `String` or `Box`. It always names the problem and, when one field is at fault, the field's
//! path in the frame (`msg.price_dollars`), so that a log line or an error record says exactly
//! what the exchange sent that the platform could not take.

use crate::fixed::FixedError;

/// Why a frame could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is larger than the configured limit.
    #[error("frame is {len} bytes, over the {limit}-byte limit")]
    FrameTooLarge {
        /// Frame length.
        len: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The frame is not valid JSON (or is truncated).
    #[error("malformed JSON at byte {offset}: {reason}")]
    Json {
        /// Byte offset where the parser stopped.
        offset: usize,
        /// What the parser expected.
        reason: &'static str,
    },
    /// The frame is valid JSON but not an object.
    #[error("frame is not a JSON object")]
    NotObject,
    /// A required field is absent (or null).
    #[error("missing field `{field}`")]
    MissingField {
        /// Field path.
        field: &'static str,
    },
    /// A field has a JSON type that cannot mean what the protocol documents.
    #[error("field `{field}`: expected {expected}")]
    WrongType {
        /// Field path.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A decimal or timestamp field cannot be converted exactly.
    #[error("field `{field}`: {}", reason.describe())]
    Value {
        /// Field path.
        field: &'static str,
        /// The conversion problem.
        reason: FixedError,
    },
    /// A field that cannot be negative (a price, a count) is negative.
    #[error("field `{field}`: negative value where none is allowed")]
    Negative {
        /// Field path.
        field: &'static str,
    },
    /// A text field is longer than its inline capacity.
    #[error("field `{field}`: longer than {limit} bytes")]
    TooLong {
        /// Field path.
        field: &'static str,
        /// The capacity.
        limit: usize,
    },
    /// A field has a value outside its domain (a `side` of `"maybe"`, a `seq` of 0).
    #[error("field `{field}`: invalid value")]
    Invalid {
        /// Field path.
        field: &'static str,
    },
}

impl DecodeError {
    /// A stable, low-cardinality label for metrics (`parse_errors_total{kind}`).
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            DecodeError::FrameTooLarge { .. } => "too_large",
            DecodeError::Json { .. } => "json",
            DecodeError::NotObject => "not_object",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::Value { reason, .. } => match reason {
                FixedError::Precision => "precision",
                FixedError::Overflow => "overflow",
                FixedError::Timestamp => "timestamp",
                FixedError::Empty | FixedError::Syntax => "number_syntax",
            },
            DecodeError::Negative { .. } => "negative",
            DecodeError::TooLong { .. } => "too_long",
            DecodeError::Invalid { .. } => "invalid",
        }
    }

    /// The field at fault, when one is.
    #[must_use]
    pub const fn field(&self) -> Option<&'static str> {
        match self {
            DecodeError::MissingField { field }
            | DecodeError::WrongType { field, .. }
            | DecodeError::Value { field, .. }
            | DecodeError::Negative { field }
            | DecodeError::TooLong { field, .. }
            | DecodeError::Invalid { field } => Some(field),
            DecodeError::FrameTooLarge { .. }
            | DecodeError::Json { .. }
            | DecodeError::NotObject => None,
        }
    }
}

/// Maps simd-json's error to a static description. simd-json reports an incomplete document as
/// a bare syntax error at byte 0, so the frame's bracket structure is scanned (only on this error
/// path) to say when the frame was cut short.
pub(crate) fn json_error(error: &simd_json::Error, frame: &[u8]) -> DecodeError {
    let (mut depth, mut in_string, mut escaped) = (0i64, false, false);
    for (index, &byte) in frame.iter().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth < 0 {
                    return DecodeError::Json {
                        offset: index,
                        reason: "unbalanced closing bracket",
                    };
                }
            }
            _ => {}
        }
    }
    if in_string {
        return DecodeError::Json {
            offset: frame.len(),
            reason: "frame ends inside a string (truncated frame?)",
        };
    }
    if depth > 0 {
        return DecodeError::Json {
            offset: frame.len(),
            reason: "frame ends inside an object or array (truncated frame?)",
        };
    }
    use simd_json::ErrorType as E;
    let reason = match error.error() {
        E::Eof => "unexpected end of input (truncated frame?)",
        E::UnterminatedString => "unterminated string (truncated frame?)",
        E::InvalidUtf8 => "invalid UTF-8",
        E::InvalidEscape | E::InvalidUnicodeEscape | E::InvalidUnicodeCodepoint => {
            "invalid escape in a string"
        }
        E::InvalidNumber | E::InvalidExponent => "invalid number",
        E::TrailingData => "data after the JSON value",
        E::KeyMustBeAString | E::BadKeyType => "object key is not a string",
        E::ExpectedObjectColon => "expected ':' in an object",
        E::ExpectedMapComma | E::ExpectedArrayComma => "expected ',' between values",
        E::ExpectedMapEnd => "expected the end of an object",
        E::NoStructure => "no JSON value",
        E::InputTooLarge => "input too large",
        E::DepthLimitExceeded => "nested deeper than 1024 levels",
        _ => "syntax error",
    };
    DecodeError::Json {
        offset: error.index(),
        reason,
    }
}
