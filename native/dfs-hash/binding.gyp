{
  "targets": [
    {
      "target_name": "dfs_hash",
      "sources": ["dfs_hash.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
