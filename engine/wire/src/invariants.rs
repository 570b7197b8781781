//! The decoder's checkable promises, shared by the fuzz target and the randomized tests.
//!
//! [`Checker::check_frame`] decodes arbitrary bytes and, when they decode, renders the record back to a
//! wire frame, decodes that, and compares the two canonical records. It returns an error string
//! only when a promise is broken; an input that is merely invalid is fine (the decoder must say
//! so with an error, which it does by returning `Err`, never by panicking).

use crate::{Decoder, render_frame, write_canonical, write_error};

/// Reusable state for [`Checker::check_frame`].
#[derive(Debug, Default)]
pub struct Checker {
    first: Decoder,
    second: Decoder,
    scratch: Vec<u8>,
    rendered: Vec<u8>,
    first_json: Vec<u8>,
    second_json: Vec<u8>,
}

/// What [`Checker::check_frame`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The frame decoded and survived the render/decode round trip unchanged.
    RoundTripped,
    /// The frame was rejected with a decode error (whose canonical error line is valid).
    Rejected,
}

impl Checker {
    /// Checks one input; `Err` describes a broken promise.
    ///
    /// # Errors
    /// A description of the broken invariant: a rendered frame that does not decode, or decodes
    /// to a different record.
    pub fn check_frame(&mut self, input: &[u8]) -> Result<Outcome, String> {
        self.scratch.clear();
        self.scratch.extend_from_slice(input);
        self.first_json.clear();
        self.rendered.clear();
        match self.first.decode(&mut self.scratch) {
            Ok(decoded) => {
                write_canonical(&decoded, &mut self.first_json);
                render_frame(&decoded, &mut self.rendered);
            }
            Err(error) => {
                write_error(&error, &mut self.first_json);
                return Ok(Outcome::Rejected);
            }
        }
        self.second_json.clear();
        let mut again = self.rendered.clone();
        match self.second.decode(&mut again) {
            Ok(decoded) => write_canonical(&decoded, &mut self.second_json),
            Err(error) => {
                return Err(format!(
                    "rendered frame does not decode ({error}): {}",
                    String::from_utf8_lossy(&self.rendered)
                ));
            }
        }
        if self.first_json != self.second_json {
            return Err(format!(
                "round trip changed the record:\n first: {}\nsecond: {}\nrender: {}",
                String::from_utf8_lossy(&self.first_json),
                String::from_utf8_lossy(&self.second_json),
                String::from_utf8_lossy(&self.rendered)
            ));
        }
        Ok(Outcome::RoundTripped)
    }
}
