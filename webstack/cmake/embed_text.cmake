# Writes a C++ source that defines `std::string_view NAMESPACE::FUNCTION()` returning the
# bytes of INPUT exactly, as a raw string literal (g++ 12 has no #embed). Run at build
# time by a custom command that depends on INPUT:
#   cmake -DINPUT=file -DOUTPUT=file.cpp -DINCLUDE=header -DNAMESPACE=ns -DFUNCTION=name
#         -P embed_text.cmake
# The raw string's delimiter is the first of text, text1, ... text99 whose closing
# sequence )DELIM" does not occur in the file, so no file can end the literal early.
cmake_minimum_required(VERSION 3.25)  # the project's policies in script mode

foreach(var INPUT OUTPUT INCLUDE NAMESPACE FUNCTION)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed_text.cmake: -D${var}=... is required")
  endif()
endforeach()

file(READ "${INPUT}" content)
# file(READ) drops carriage returns (and the compiler would turn CR LF into LF inside the
# literal): such a file would not be embedded byte for byte.
file(SIZE "${INPUT}" size)
string(LENGTH "${content}" length)
if(NOT length EQUAL size)
  message(FATAL_ERROR "embed_text.cmake: ${INPUT} has carriage returns (not embedded byte for byte)")
endif()

set(delimiter "")
foreach(i RANGE 0 99)
  if(i EQUAL 0)
    set(candidate "text")
  else()
    set(candidate "text${i}")
  endif()
  string(FIND "${content}" ")${candidate}\"" at)
  if(at EQUAL -1)
    set(delimiter "${candidate}")
    break()
  endif()
endforeach()
if(delimiter STREQUAL "")
  message(FATAL_ERROR "embed_text.cmake: no raw string delimiter fits ${INPUT}")
endif()

file(WRITE "${OUTPUT}"
  "// Generated from ${INPUT} by embed_text.cmake; edit that file instead.\n"
  "#include \"${INCLUDE}\"\n"
  "\n"
  "namespace ${NAMESPACE} {\n"
  "\n"
  "std::string_view ${FUNCTION}() {\n"
  "  return R\"${delimiter}(${content})${delimiter}\";\n"
  "}\n"
  "\n"
  "}  // namespace ${NAMESPACE}\n")
