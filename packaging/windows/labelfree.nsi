; LabelFree per-user Windows installer (NSIS 3). No administrator rights: everything goes to
; %LOCALAPPDATA%\Programs\LabelFree and HKCU. Built by .github/workflows/installers.yml:
;
;   makensis /DVERSION=0.1.0 /DDIST=path\to\dist\labelfree /DOUTFILE=LabelFree-0.1.0-Setup.exe packaging\windows\labelfree.nsi
;
; DIST (an absolute path) is the PyInstaller one-folder bundle (labelfree.exe, labelfree-gui.exe, _internal\).
; Silent install for IT: LabelFree-Setup.exe /S   (uninstall: "%LOCALAPPDATA%\Programs\LabelFree\Uninstall.exe" /S)

Unicode True
!ifndef VERSION
  !define VERSION "0.0.0"
!endif
!ifndef DIST
  !error "Pass /DDIST=<PyInstaller dist folder of LabelFree>"
!endif
!ifndef OUTFILE
  !define OUTFILE "LabelFree-${VERSION}-Setup.exe"
!endif
!define NAME "LabelFree"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${NAME}"
!define PROGID "LabelFree.Image"
!ifndef ICON
  !define ICON "../../resources/icons/labelfree.ico"  ; makensis runs in this folder; / works on Windows too
!endif

Name "${NAME} ${VERSION}"
OutFile "${OUTFILE}"
RequestExecutionLevel user
InstallDir "$LOCALAPPDATA\Programs\${NAME}"
InstallDirRegKey HKCU "${UNINST_KEY}" "InstallLocation"
SetCompressor /SOLID lzma
SetCompressorDictSize 64
ShowInstDetails nevershow
BrandingText "${NAME} ${VERSION}"

!include "MUI2.nsh"
!include "LogicLib.nsh"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\labelfree-gui.exe"
!define MUI_FINISHPAGE_RUN_TEXT "Start LabelFree"
!define MUI_COMPONENTSPAGE_SMALLDESC

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

VIProductVersion "${VERSION}.0"
VIAddVersionKey /LANG=${LANG_ENGLISH} "ProductName" "${NAME}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "FileDescription" "${NAME} installer"
VIAddVersionKey /LANG=${LANG_ENGLISH} "ProductVersion" "${VERSION}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "FileVersion" "${VERSION}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "LegalCopyright" "BSD-3-Clause"

Function .onInit
  SetShellVarContext current
FunctionEnd

Function un.onInit
  SetShellVarContext current
FunctionEnd

Section "LabelFree (required)" SecApp
  SectionIn RO
  ; an older version's files go first, so nothing stale is mixed with the new bundle
  RMDir /r "$INSTDIR\_internal"
  SetOutPath "$INSTDIR"
  File /r "${DIST}/*"
  File "/oname=labelfree.ico" "${ICON}"
  WriteUninstaller "$INSTDIR\Uninstall.exe"
  CreateShortCut "$SMPROGRAMS\${NAME}.lnk" "$INSTDIR\labelfree-gui.exe" "" "$INSTDIR\labelfree.ico" 0
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${NAME}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "LabelFree developers"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\labelfree.ico"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\Uninstall.exe"'
  WriteRegStr HKCU "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\Uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
SectionEnd

Section "Desktop shortcut" SecDesktop
  CreateShortCut "$DESKTOP\${NAME}.lnk" "$INSTDIR\labelfree-gui.exe" "" "$INSTDIR\labelfree.ico" 0
SectionEnd

; Adds LabelFree to "Open with" for .tif/.tiff files of this user; it does not take over the
; default program (Windows asks the user for that).
Section /o "Open .tif files with LabelFree" SecAssoc
  WriteRegStr HKCU "Software\Classes\${PROGID}" "" "TIFF image (LabelFree)"
  WriteRegStr HKCU "Software\Classes\${PROGID}\DefaultIcon" "" "$INSTDIR\labelfree.ico,0"
  WriteRegStr HKCU "Software\Classes\${PROGID}\shell\open\command" "" '"$INSTDIR\labelfree-gui.exe" "%1"'
  WriteRegStr HKCU "Software\Classes\.tif\OpenWithProgids" "${PROGID}" ""
  WriteRegStr HKCU "Software\Classes\.tiff\OpenWithProgids" "${PROGID}" ""
  WriteRegStr HKCU "Software\Classes\Applications\labelfree-gui.exe\SupportedTypes" ".tif" ""
  WriteRegStr HKCU "Software\Classes\Applications\labelfree-gui.exe\SupportedTypes" ".tiff" ""
  System::Call 'shell32::SHChangeNotify(i 0x08000000, i 0, p 0, p 0)'  ; SHCNE_ASSOCCHANGED
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecApp} "The LabelFree application, its bundled models and the demo image."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecDesktop} "A LabelFree shortcut on your desktop."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecAssoc} "Offer LabelFree in 'Open with' for .tif and .tiff files."
!insertmacro MUI_FUNCTION_DESCRIPTION_END

Section "Uninstall"
  Delete "$SMPROGRAMS\${NAME}.lnk"
  Delete "$DESKTOP\${NAME}.lnk"
  DeleteRegValue HKCU "Software\Classes\.tif\OpenWithProgids" "${PROGID}"
  DeleteRegValue HKCU "Software\Classes\.tiff\OpenWithProgids" "${PROGID}"
  DeleteRegKey HKCU "Software\Classes\${PROGID}"
  DeleteRegKey HKCU "Software\Classes\Applications\labelfree-gui.exe"
  DeleteRegKey HKCU "${UNINST_KEY}"
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\labelfree.exe"
  Delete "$INSTDIR\labelfree-gui.exe"
  Delete "$INSTDIR\labelfree.ico"
  Delete "$INSTDIR\Uninstall.exe"
  RMDir "$INSTDIR"
  System::Call 'shell32::SHChangeNotify(i 0x08000000, i 0, p 0, p 0)'
  ; Models you installed, settings and caches stay in %LOCALAPPDATA%\LabelFree.
SectionEnd
