"""BERT: masked-language-model pretraining, IMDB fine-tuning and sentiment prediction."""
