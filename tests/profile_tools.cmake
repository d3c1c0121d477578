# Programs for the profiler's device checks (scripts/device_profile_check2.sh), CUDA builds only:
#   bin/fathom_pageable_loop   a sync/transfer-bound loop with NVTX step ranges (tools/pageable_copy_loop.cu)
if(FATHOM_ENABLE_CUDA)
  add_executable(fathom_pageable_loop ${CMAKE_SOURCE_DIR}/tools/pageable_copy_loop.cu)
  target_include_directories(fathom_pageable_loop PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  target_link_libraries(fathom_pageable_loop PRIVATE CUDA::cudart ${CMAKE_DL_LIBS})
  set_target_properties(fathom_pageable_loop PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
endif()
