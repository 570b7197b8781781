//! Small JSON writing helpers shared by the canonical-record writer, the frame renderer and the
//! command encoder. Output is compact, with fields in a fixed order, so equal records give equal
//! bytes.

use simd_json::{Node, StaticNode};

/// Something JSON text can be appended to.
pub trait Sink {
    /// Appends text.
    fn put(&mut self, text: &str);
}

impl Sink for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }
}

/// Appends `text` as a quoted JSON string, escaping quotes, backslashes and control characters.
pub fn write_str<S: Sink + ?Sized>(out: &mut S, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put("\"");
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.put(&text[clean_from..index]);
        if escape.is_empty() {
            let code = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ];
            // The six bytes are ASCII, so this cannot fail.
            out.put(core::str::from_utf8(&code).unwrap_or("?"));
        } else {
            out.put(escape);
        }
        clean_from = index + 1;
    }
    out.put(&text[clean_from..]);
    out.put("\"");
}

/// Re-serializes the JSON value at tape index `at` compactly.
pub(crate) fn write_tape_value(nodes: &[Node<'_>], at: usize, out: &mut String) {
    use core::fmt::Write as _;
    match nodes.get(at) {
        Some(Node::String(text)) => write_str(out, text),
        Some(Node::Static(StaticNode::Null)) | None => out.push_str("null"),
        Some(Node::Static(StaticNode::Bool(b))) => out.push_str(if *b { "true" } else { "false" }),
        Some(Node::Static(StaticNode::I64(v))) => {
            let _ = write!(out, "{v}");
        }
        Some(Node::Static(StaticNode::U64(v))) => {
            let _ = write!(out, "{v}");
        }
        Some(Node::Static(StaticNode::F64(v))) => {
            let _ = write!(out, "{v}");
        }
        Some(Node::Object { len, .. }) => {
            out.push('{');
            let mut position = at + 1;
            for index in 0..*len {
                if index > 0 {
                    out.push(',');
                }
                write_tape_value(nodes, position, out);
                out.push(':');
                write_tape_value(nodes, position + 1, out);
                position += 1 + span(nodes, position + 1);
            }
            out.push('}');
        }
        Some(Node::Array { len, .. }) => {
            out.push('[');
            let mut position = at + 1;
            for index in 0..*len {
                if index > 0 {
                    out.push(',');
                }
                write_tape_value(nodes, position, out);
                position += span(nodes, position);
            }
            out.push(']');
        }
    }
}

fn span(nodes: &[Node<'_>], at: usize) -> usize {
    match nodes.get(at) {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        _ => 1,
    }
}

/// Writes `"key":` with a leading comma unless it is the first field.
pub(crate) struct ObjectWriter<'o> {
    pub(crate) out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    pub(crate) fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        write_str(out, value);
    }

    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.null(key),
        }
    }

    pub(crate) fn raw(&mut self, key: &str, value: &str) {
        self.key(key).extend_from_slice(value.as_bytes());
    }

    pub(crate) fn null(&mut self, key: &str) {
        self.raw(key, "null");
    }

    pub(crate) fn i64(&mut self, key: &str, value: i64) {
        let out = self.key(key);
        crate::fixed::write_i64(out, value);
    }

    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        let out = self.key(key);
        crate::fixed::write_u64(out, value);
    }

    pub(crate) fn opt_i64(&mut self, key: &str, value: Option<i64>) {
        match value {
            Some(value) => self.i64(key, value),
            None => self.null(key),
        }
    }

    pub(crate) fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(value) => self.u64(key, value),
            None => self.null(key),
        }
    }

    pub(crate) fn opt_bool(&mut self, key: &str, value: Option<bool>) {
        match value {
            Some(true) => self.raw(key, "true"),
            Some(false) => self.raw(key, "false"),
            None => self.null(key),
        }
    }

    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Escaping produces JSON that a reference parser reads back to the same string.
    #[test]
    fn escaping_round_trips() {
        for text in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\ncr\rtab\t",
            "\u{1}\u{1f}",
            "é✓",
        ] {
            let mut out = String::new();
            write_str(&mut out, text);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, text);
        }
    }
}
