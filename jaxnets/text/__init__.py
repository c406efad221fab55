"""Text utilities for the transformer models: WordPiece tokenization and MLM masking."""
