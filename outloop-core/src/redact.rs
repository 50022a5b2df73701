//! TEMPORARY stub with the agreed API; replaced by the real redactor.
#![allow(missing_docs)]
use crate::error::Result;
use crate::secret::SecretValue;
pub trait Redactor: Send + Sync {
    fn redact(&self, input: &[u8]) -> Redacted;
    fn stream(&self) -> Box<dyn RedactStream + Send>;
}
pub struct Redacted { pub output: Vec<u8>, pub count: usize }
pub trait RedactStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> usize;
    fn finish(&mut self, out: &mut Vec<u8>) -> usize;
}
#[derive(Default)]
pub struct RedactorBuilder { floor: usize }
impl RedactorBuilder {
    pub fn new() -> Self { Self { floor: 8 } }
    pub fn floor(self, bytes: usize) -> Self { Self { floor: bytes } }
    pub fn add(&mut self, _label: &str, _value: &SecretValue) -> Result<()> { let _ = self.floor; Ok(()) }
    pub fn build(self) -> SecretRedactor { SecretRedactor }
}
#[derive(Clone, Debug)]
pub struct SecretRedactor;
struct S(Vec<u8>);
impl RedactStream for S {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> usize { self.0.clear(); out.extend_from_slice(chunk); 0 }
    fn finish(&mut self, _out: &mut Vec<u8>) -> usize { 0 }
}
impl Redactor for SecretRedactor {
    fn redact(&self, input: &[u8]) -> Redacted { Redacted { output: input.to_vec(), count: 0 } }
    fn stream(&self) -> Box<dyn RedactStream + Send> { Box::new(S(Vec::new())) }
}
