"""The bag-of-words baseline a BERT run reports beside its own accuracy: TF-IDF and logistic
regression (scikit-learn) on the same IMDB splits."""

from __future__ import annotations

from jaxnets.data.text import TextSplits


def bag_of_words_baseline(splits: TextSplits) -> dict[str, float]:
    """TF-IDF of word unigrams and bigrams + logistic regression: a sanity check of the data."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, max_features=200_000, sublinear_tf=True
    )
    x_train = vectorizer.fit_transform(splits.train_texts)
    clf = LogisticRegression(C=4.0, max_iter=1000).fit(x_train, splits.train_labels)
    return {
        "bow_val_accuracy": float(
            clf.score(vectorizer.transform(splits.val_texts), splits.val_labels)
        ),
        "bow_test_accuracy": float(
            clf.score(vectorizer.transform(splits.test_texts), splits.test_labels)
        ),
    }
