{
  "targets": [{
    "target_name": "ddfs_native",
    "sources": ["<!@(ls -1 native/*.cc native/*/*.cc 2>/dev/null)"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native", "<!@(pkg-config --cflags-only-I fuse3 | sed s/-I//g)"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O3", "-march=x86-64-v2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "libraries": ["-ldl", "-lIPSec_MB", "<!@(pkg-config --libs fuse3)"]
  }]
}
