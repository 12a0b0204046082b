"""The one path every image takes: decode once → hash → cache → analyzers (batched) → policy."""
