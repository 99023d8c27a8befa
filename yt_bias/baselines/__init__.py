"""Reference implementations we compare against (TFRS's Retrieval task)."""
