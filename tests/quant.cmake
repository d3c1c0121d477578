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
set_tests_properties(quant_oracle_gguf_py PROPERTIES LABELS cpu TIMEOUT 300)
