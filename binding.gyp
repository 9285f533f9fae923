{
  "targets": [
    {
      "target_name": "vtoe_native",
      "sources": [
        "native/addon.cc",
        "native/abi_constants.cc",
        "native/control_server.cc",
        "native/ctl_message.cc",
        "native/js_boundary.cc",
        "native/js_control_server.cc",
        "native/js_shm_connection.cc",
        "native/shm_connection.cc",
        "native/socket_path.cc",
        "native/system_error.cc",
        "native/verbs_probe.cc",
        "native/js_verbs_probe.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "include"
      ],
      "defines": ["NAPI_CPP_EXCEPTIONS"],
      "libraries": ["-ldl"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"]
    }
  ]
}
