; Tunebench for Windows: a per-user NSIS installer (no administrator rights).
; Built by installer/windows/build_installer.py, which stages the files in STAGE and passes
; VERSION, WHEEL (the Tunebench wheel's file name) and OUTFILE with /D.
;
; Installs the stdlib bootstrap, the Tunebench wheel, uv.exe and a launcher; the first start of
; the launcher creates the GUI environment with the user's Python 3.11+ ("py -3") or, when there
; is none, one that uv installs into $INSTDIR\python. Silent: /S; silent uninstall keeps models
; and runs unless /PURGE.

Unicode true
Target amd64-unicode
RequestExecutionLevel user
SetCompressor /SOLID lzma

!include "MUI2.nsh"
!include "FileFunc.nsh"
!include "LogicLib.nsh"

!define APP "Tunebench"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Tunebench"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\Tunebench"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"

!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Section "Tunebench" SecMain
  SetShellVarContext current
  SetOutPath "$INSTDIR\installer"
  ; The bootstrap and its modules: build_installer.py stages exactly the ones it needs.
  File "${STAGE}\installer\*.py"
  SetOutPath "$INSTDIR\installer\locks"
  File "${STAGE}\installer\locks\*.txt"
  SetOutPath "$INSTDIR\uv"
  File "${STAGE}\uv\uv.exe"
  SetOutPath "$INSTDIR\wheels"
  File "${STAGE}\wheels\${WHEEL}"
  SetOutPath "$INSTDIR"
  File "${STAGE}\Tunebench.cmd"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  CreateShortcut "$SMPROGRAMS\Tunebench.lnk" "$INSTDIR\Tunebench.cmd" "" "$SYSDIR\shell32.dll" 12
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "Tunebench developers"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  SetShellVarContext current
  Delete "$SMPROGRAMS\Tunebench.lnk"
  ; The environment and the Python the launcher made, then our own files; never anything else
  ; in INSTDIR.
  RMDir /r "$INSTDIR\venv"
  RMDir /r "$INSTDIR\python"
  RMDir /r "$INSTDIR\uv"
  RMDir /r "$INSTDIR\installer"
  RMDir /r "$INSTDIR\wheels"
  Delete "$INSTDIR\Tunebench.cmd"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
  ; Models, datasets and runs (engine/core/paths.py: platformdirs "Tunebench" under LOCALAPPDATA)
  ; are the user's work: asked about; a silent uninstall keeps them unless /PURGE is given.
  ${GetParameters} $0
  ClearErrors
  ${GetOptions} $0 "/PURGE" $1
  ${IfNot} ${Errors}
    RMDir /r "$LOCALAPPDATA\Tunebench"
  ${ElseIf} ${FileExists} "$LOCALAPPDATA\Tunebench\*.*"
    MessageBox MB_YESNO|MB_ICONQUESTION "Also delete your Tunebench models, datasets and runs in $LOCALAPPDATA\Tunebench?" /SD IDNO IDNO keep
    RMDir /r "$LOCALAPPDATA\Tunebench"
    keep:
  ${EndIf}
SectionEnd
