# Install layout and Debian package (cpack -G DEB): owned by packaging work.
include(GNUInstallDirs)
install(TARGETS pvgate RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
