"""Source readers: turn a database change log into `SourceTransaction`s."""
