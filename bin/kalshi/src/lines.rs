//! Reading newline-delimited frames with a bound on line length.

use std::io::BufRead;

/// How a line ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineStatus {
    /// The whole line is in the buffer (without its newline).
    Complete,
    /// The line was longer than the bound; it was consumed and discarded.
    TooLong,
}

/// Reads one line into `line` (cleared first), without the trailing `\n` or `\r\n`. A line
/// longer than `bytes_max` is consumed up to its newline but not kept, so memory stays bounded
/// whatever the input. Returns `None` at end of input.
pub(crate) fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    bytes_max: usize,
) -> std::io::Result<Option<LineStatus>> {
    line.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        read_any = true;
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..end], Some(end + 1)),
            None => (available, None),
        };
        if !too_long {
            if line.len() + chunk.len() > bytes_max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(chunk.len());
        reader.consume(consumed);
        if done.is_some() {
            break;
        }
    }
    if !read_any {
        return Ok(None);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(if too_long {
        LineStatus::TooLong
    } else {
        LineStatus::Complete
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines split across buffer refills, CRLF endings, a missing final newline and an
    // oversized line that is skipped without being kept.
    #[test]
    fn bounded_lines() {
        let input = b"ab\r\ncdefgh\nxyz".to_vec();
        let mut reader = std::io::BufReader::with_capacity(2, &input[..]);
        let mut line = Vec::new();
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 4).unwrap(),
            Some(LineStatus::Complete)
        );
        assert_eq!(line, b"ab");
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 4).unwrap(),
            Some(LineStatus::TooLong)
        );
        assert!(line.is_empty());
        assert_eq!(
            read_line_bounded(&mut reader, &mut line, 4).unwrap(),
            Some(LineStatus::Complete)
        );
        assert_eq!(line, b"xyz");
        assert_eq!(read_line_bounded(&mut reader, &mut line, 4).unwrap(), None);
    }
}
