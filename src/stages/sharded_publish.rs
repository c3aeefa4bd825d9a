//! Publishing a table scored in shards in bounded memory (see below).
