# tether_protobuf_c(<out_var> <proto> [<proto> ...]
#                   [PROTO_ROOT <dir>] [IMPORT_DIRS <dir> ...])
#
# Runs protoc-c on each .proto file and sets <out_var> to the generated
# .pb-c.c sources.  Outputs go to ${CMAKE_CURRENT_BINARY_DIR} (below it, at
# the proto's path relative to PROTO_ROOT when given), which is
# added to the include path of targets that call
# target_include_directories(<t> PRIVATE ${CMAKE_CURRENT_BINARY_DIR}).
# A proto's directory is always on its own import path; the system proto
# directory (google/protobuf/*.proto) is added when present.
# Reusable by applications: find_package(tether CONFIG) includes it.
# protoc-c (Debian: protobuf-c-compiler) is needed only when the function
# is called, so a project that links tether without generating code
# does not need it.
find_program(TETHER_PROTOC_C protoc-c)

function(tether_protobuf_c out_var)
    if(NOT TETHER_PROTOC_C)
        message(FATAL_ERROR "tether_protobuf_c: protoc-c not found (Debian: protobuf-c-compiler)")
    endif()
    cmake_parse_arguments(ARG "" "PROTO_ROOT" "IMPORT_DIRS" ${ARGN})
    set(srcs)
    foreach(proto IN LISTS ARG_UNPARSED_ARGUMENTS)
        get_filename_component(abs "${proto}" ABSOLUTE)
        get_filename_component(dir "${abs}" DIRECTORY)
        get_filename_component(name "${abs}" NAME_WE)
        set(root "${dir}")
        if(ARG_PROTO_ROOT)
            set(root "${ARG_PROTO_ROOT}")
        endif()
        file(RELATIVE_PATH rel "${root}" "${abs}")
        get_filename_component(reldir "${rel}" DIRECTORY)
        set(outdir "${CMAKE_CURRENT_BINARY_DIR}")
        if(reldir)
            set(outdir "${CMAKE_CURRENT_BINARY_DIR}/${reldir}")
        endif()
        set(flags "--proto_path=${root}")
        foreach(d IN LISTS ARG_IMPORT_DIRS)
            list(APPEND flags "--proto_path=${d}")
        endforeach()
        if(NOT root STREQUAL "/usr/include" AND EXISTS /usr/include/google/protobuf/wrappers.proto)
            list(APPEND flags "--proto_path=/usr/include")
        endif()
        set(c "${outdir}/${name}.pb-c.c")
        set(h "${outdir}/${name}.pb-c.h")
        add_custom_command(
            OUTPUT "${c}" "${h}"
            COMMAND ${TETHER_PROTOC_C} ${flags} "--c_out=${CMAKE_CURRENT_BINARY_DIR}" "${abs}"
            DEPENDS "${abs}"
            COMMENT "protoc-c ${name}.proto"
            VERBATIM)
        list(APPEND srcs "${c}")
    endforeach()
    set(${out_var} ${srcs} PARENT_SCOPE)
endfunction()
