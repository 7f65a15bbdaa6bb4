//! Text processing between decoding and classification: [`mask`] removes personal data from
//! free text and hashes author identifiers, then [`segment`] cuts the masked text into the
//! content tokens and keywords that the models, routing and detection read.

pub mod emoticons;
pub mod mask;
pub mod segment;
pub mod tokens;
