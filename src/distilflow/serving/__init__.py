"""The served model: the pyfunc classifier, its body limit, the models-from-code entry, local servers."""
