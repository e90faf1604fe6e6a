"""The Train page: one training session class for both modes (Memorize sentences, Language model)."""
